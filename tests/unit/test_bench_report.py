"""The benchmark's pure parts: percentiles, targets, tables, the README section, the
profile summary and the records it produces."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from bench import scaling
from bench.profile import flame_svg, parse_collapsed, summarize
from bench.records import batch_bodies, batch_rows, id_prefix, records
from bench.report import (
    Latency,
    Phase,
    Profile,
    Report,
    Spread,
    Stage,
    Usage,
    compare,
    cpu_costs,
    cpu_per_thousand,
    cpu_summary,
    fraction_of_slowest,
    latency,
    newest_results,
    percentile,
    phases_named,
    pipeline_cpu_percent,
    render_markdown,
    slowest_stage,
    spread,
    targets,
    to_json,
    update_readme,
)
from services.common import jsoncodec
from services.common.contracts import load_manual


def phase(
    name: str = "full speed",
    rate: float | None = None,
    records: int = 10_000,
    arrived: int | None = None,
    seconds: float = 2.0,
    p99_ms: float = 50.0,
    rss_mb: float = 80.0,
) -> Phase:
    return Phase(
        name=name,
        rate=rate,
        records=records,
        arrived=records if arrived is None else arrived,
        produce_seconds=1.0,
        seconds=seconds,
        latency=Latency(p50_ms=10.0, p95_ms=40.0, p99_ms=p99_ms, max_ms=120.0),
        usage={
            "api": Usage(peak_rss_mb=rss_mb, hwm_mb=rss_mb + 1, cpu_percent=95.0, cpu_seconds=1.9),
            "scheduler": Usage(peak_rss_mb=70.0, hwm_mb=71.0, cpu_percent=40.0, cpu_seconds=0.8),
            "postgres": Usage(None, None, 30.0, 0.6),
        },
        machine_cpu_percent=88.0,
    )


def report(*phases: Phase, stages: tuple[Stage, ...] = ()) -> Report:
    return Report(
        run_id="abc123",
        started_at="2026-01-02T03:04:05+00:00",
        command="python -m bench --records 10000",
        machine={"nproc": 2, "cpu_model": "Xeon", "memory_gib": 24.0, "kernel": "6", "python": "3"},
        settings={"SCHEDULER_BATCH_SIZE": "500"},
        load_before=(0.5, 0.4, 0.3),
        load_after=(1.5, 0.9, 0.4),
        phases=list(phases),
        stages=list(stages),
    )


STAGES = (
    Stage("aiokafka produce", 10_000, 1.0),
    Stage("asyncpg upsert", 10_000, 0.5),
    Stage("aiohttp hop", 10_000, 0.1),
)


# --- percentiles ------------------------------------------------------------------------


def test_percentiles_are_nearest_rank_so_each_is_an_observed_value() -> None:
    values = [float(n) for n in range(1, 101)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([7.0], 99) == 7.0


def test_a_few_samples_make_the_p99_the_maximum() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


def test_percentile_of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_turns_unsorted_seconds_into_milliseconds() -> None:
    seconds = [0.001 * n for n in range(200, 0, -1)]  # 200 ms down to 1 ms

    assert latency(seconds) == Latency(p50_ms=100.0, p95_ms=190.0, p99_ms=198.0, max_ms=200.0)
    assert latency([]) is None


# --- throughput and targets -------------------------------------------------------------


def test_throughput_is_arrivals_over_seconds_and_zero_without_time() -> None:
    assert phase(records=10_000, arrived=9_000, seconds=2.0).throughput == 4_500.0
    assert phase(seconds=0.0).throughput == 0.0
    assert Stage("x", 1_000, 0.25).throughput == 4_000.0


def test_cpu_per_thousand_records_divides_each_process_cpu_time_by_the_records() -> None:
    assert cpu_per_thousand(phase(records=10_000)) == {
        "api": 190.0,
        "scheduler": 80.0,
        "postgres": 60.0,
    }


def test_the_pipeline_is_compared_with_its_slowest_stage() -> None:
    run = report(phase(records=10_000, seconds=2.0), stages=STAGES)  # 5,000 records/s

    assert slowest_stage(STAGES) == STAGES[0]  # 10,000 records/s
    assert fraction_of_slowest(run) == pytest.approx(0.5)
    assert fraction_of_slowest(report(phase())) is None  # raw stages skipped


def everyday(p50_ms: float = 10.0, p99_ms: float = 40.0, cpu: float = 10.0) -> Phase:
    paced = replace(phase("1000/s", rate=1_000.0, p99_ms=p99_ms), latency=None)
    usage = {name: replace(u, cpu_percent=cpu) for name, u in paced.usage.items()}
    return replace(
        paced,
        latency=Latency(p50_ms=p50_ms, p95_ms=p99_ms, p99_ms=p99_ms, max_ms=p99_ms),
        usage=usage,
    )


def test_targets_met() -> None:
    run = report(phase(records=24_000, seconds=2.0), everyday(20.0, 50.0, 13.3), stages=STAGES)

    found = targets(run)

    assert [t.met for t in found] == [True, True, True, True]
    assert found[0].measured == "12,000 records/s"
    assert found[2].measured == "p99 50.0 ms, p50 20.0 ms"
    assert found[3].measured == "40 %"  # api + scheduler + postgres, 13.3 % each


def test_targets_fall_short_when_slow_or_when_records_went_missing() -> None:
    slow = report(phase(records=10_000, seconds=4.0), everyday(p99_ms=51))
    lossy = report(phase(records=30_000, arrived=29_999, seconds=2.0))

    assert [t.met for t in targets(slow)] == [False, False, True]
    assert [t.met for t in targets(lossy)] == [False]
    assert [t.met for t in targets(report(everyday(p50_ms=21)))] == [False, True]
    assert [t.met for t in targets(report(everyday(cpu=13.4)))] == [True, False]


def test_targets_of_repeated_phases_are_judged_on_their_medians() -> None:
    run = report(
        phase(records=20_000, seconds=2.0),  # 10,000 records/s
        phase(records=26_000, seconds=2.0),  # 13,000
        phase(records=30_000, seconds=2.0),  # 15,000
        everyday(p99_ms=200.0),
        everyday(p99_ms=45.0),
        everyday(p99_ms=48.0),
    )

    found = targets(run)

    assert found[0].measured == "13,000 records/s" and found[0].met
    assert found[1].measured == "p99 48.0 ms, p50 10.0 ms" and found[1].met


def test_backlog_target_needs_every_service_under_150_mb() -> None:
    under = report(phase("backlog", records=200_000, seconds=40.0, rss_mb=149.9))
    over = report(phase("backlog", records=200_000, seconds=40.0, rss_mb=150.0))

    assert [t.met for t in targets(under)] == [True]
    assert targets(under)[0].measured == "drained in 40.0 s; peak RSS api 150 MB, scheduler 70 MB"
    assert [t.met for t in targets(over)] == [False]


# --- repeats and the recorded run ---------------------------------------------------------


def test_spread_is_the_median_lowest_and_highest() -> None:
    assert spread([3.0, 1.0, 2.0, 10.0]) == Spread(2.5, 1.0, 10.0, 4)
    assert spread([4.0]) == Spread(4.0, 4.0, 4.0, 1)
    assert spread([]) is None


def test_cpu_costs_add_up_the_pipeline_without_the_load_generator() -> None:
    one = phase(records=10_000)
    with_bench = replace(one, usage={**one.usage, "bench": Usage(None, None, 20.0, 5.0)})

    costs = cpu_costs(with_bench)

    assert costs["pipeline"] == 190.0 + 80.0 + 60.0
    assert costs["bench"] == 500.0
    assert pipeline_cpu_percent(with_bench) == 95.0 + 40.0 + 30.0


def test_repeats_of_a_phase_are_summarised_per_process() -> None:
    fast, slow = phase(records=10_000), phase(records=5_000)  # the same CPU over half as many

    summary = cpu_summary([fast, slow, fast])

    assert summary["api"] == Spread(190.0, 190.0, 380.0, 3)
    assert summary["pipeline"] == Spread(330.0, 330.0, 660.0, 3)
    assert phases_named(report(fast, phase("1000/s"), slow)) == {
        "full speed": [fast, slow],
        "1000/s": [phase("1000/s")],
    }


def test_headline_table_gives_each_phase_its_medians_and_spread() -> None:
    run = report(phase(records=10_000), phase("1000/s", rate=1_000.0), phase(records=5_000))

    rows = table_rows(render_markdown(run), "phase | runs")

    assert rows[0] == [
        *("phase", "runs", "api ms", "scheduler ms", "kafka ms", "postgres ms", "pipeline ms"),
        *("bench ms", "records/s", "p50 ms", "p99 ms"),
    ]
    assert rows[2] == [
        *("full speed", "2", "285 (190 to 380)", "120 (80 to 160)", "-", "90 (60 to 120)"),
        *("495 (330 to 660)", "-", "3,750 (2,500 to 5,000)", "10.0 (10.0 to 10.0)"),
        "50.0 (50.0 to 50.0)",
    ]
    assert rows[3][:3] == ["1000/s", "1", "190"]


def test_a_run_is_compared_with_the_recorded_one_phase_by_phase() -> None:
    recorded = orjson.loads(
        orjson.dumps(to_json(report(phase(records=20_000), phase("100/s", rate=100.0))))
    )
    # A results file from before repeats and the pipeline total: the total is derived.
    for raw in recorded["phases"]:
        del raw["cpu_ms_per_1000_records"]["pipeline"]
    run = report(phase(records=10_000), phase("1000/s", rate=1_000.0))

    rows = compare(run, recorded)

    assert rows == [
        ["full speed", "api", "190", "95", "+100 %"],
        ["full speed", "scheduler", "80", "40", "+100 %"],
        ["full speed", "postgres", "60", "30", "+100 %"],
        ["full speed", "pipeline", "330", "165", "+100 %"],
    ]
    markdown = render_markdown(run, recorded, "bench/results/x.json")
    assert "Against the last recorded run (bench/results/x.json)" in markdown
    assert table_rows(markdown, "phase | process")[2] == rows[0]
    assert "Against the last recorded run" not in render_markdown(run)


def test_a_run_is_compared_with_the_newest_recorded_file_of_its_mode() -> None:
    names = [
        *("2026-11-29.json", "2026-11-30.json", "2026-11-30.md", "2026-12-01-backlog.json"),
        *("2026-12-02-profile.json", "2026-12-03-scaling.md", "notes.json"),
    ]

    assert newest_results(names, "latest") == "2026-11-30.json"
    assert newest_results(names, "backlog") == "2026-12-01-backlog.json"
    assert newest_results(names, "profile") == "2026-12-02-profile.json"
    assert newest_results(["notes.json"], "latest") is None


# --- rendering --------------------------------------------------------------------------


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The cells of the table whose header starts with ``header`` (cells joined by " | ")."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_markdown_has_a_row_per_phase_with_throughput_and_percentiles() -> None:
    no_latency = replace(phase("backlog"), latency=None)
    markdown = render_markdown(
        report(phase(records=10_000, seconds=2.0), phase("100/s", rate=100.0), no_latency)
    )

    rows = table_rows(markdown, "phase | records")
    assert rows[0] == [
        *("phase", "records", "arrived", "produced in s", "end to end s", "records/s"),
        *("p50 ms", "p95 ms", "p99 ms", "max ms"),
    ]
    assert rows[1] == ["---", *["---:"] * 9]
    assert rows[2] == [
        *("full speed", "10,000", "10,000", "1.0", "2.0", "5,000"),
        *("10.0", "40.0", "50.0", "120.0"),
    ]
    assert rows[3][0] == "100/s"
    assert rows[4][5:] == ["5,000", "-", "-", "-", "-"]  # no latency for a backlog
    assert all(len(row) == len(rows[0]) for row in rows)
    assert "`python -m bench --records 10000`" in markdown
    assert "load average before 0.50 / 0.40 / 0.30, after 1.50 / 0.90 / 0.40" in markdown


def test_markdown_shows_resources_stages_fraction_and_targets() -> None:
    markdown = render_markdown(report(phase(records=10_000, seconds=2.0), stages=STAGES))

    usage = table_rows(markdown, "phase | api RSS MB")
    assert usage[2] == ["full speed", "80", "70", "95", "40", "-", "30", "-", "88"]  # no kafka
    assert "VmHWM (peak RSS since each service started): api 81 MB, scheduler 71 MB." in markdown
    assert table_rows(markdown, "stage")[2] == ["aiokafka produce", "10,000", "1.00", "10,000"]
    assert "**Pipeline at full speed = 0.50 of the slowest stage** (aiokafka produce)." in markdown
    assert [row[2] for row in table_rows(markdown, "target")[2:]] == ["**no**", "yes"]


def test_markdown_without_raw_stages_or_phases_omits_their_tables() -> None:
    markdown = render_markdown(report())

    assert "| stage |" not in markdown
    assert "| phase |" not in markdown
    assert "| target |" not in markdown


def test_markdown_lists_the_profile_of_each_service() -> None:
    run = report(phase())
    run.profiles["api"] = Profile(
        samples=1_000,
        self_time=[("load (marshmallow/schema.py:700)", 12.5)],
        project=[("persist_batch (services/api/handlers.py:170)", 80.0), ("persist (x)", 5.0)],
    )

    rows = table_rows(render_markdown(run), "most self time")
    assert rows[1] == ["---", "---:", "---", "---:"]
    assert rows[2] == [
        *("`load (marshmallow/schema.py:700)`", "12.5"),
        *("`persist_batch (services/api/handlers.py:170)`", "80.0"),
    ]
    assert rows[3] == ["", "0.0", "`persist (x)`", "5.0"]


def test_json_carries_every_figure_and_the_derived_ones() -> None:
    data = orjson.loads(
        orjson.dumps(to_json(report(phase(records=10_000, seconds=2.0), stages=STAGES)))
    )

    assert data["phases"][0]["throughput"] == 5_000.0
    assert data["phases"][0]["latency"]["p99_ms"] == 50.0
    assert data["phases"][0]["usage"]["api"]["peak_rss_mb"] == 80.0
    assert data["phases"][0]["cpu_ms_per_1000_records"]["api"] == 190.0
    assert data["stages"][2]["throughput"] == 100_000.0
    assert data["fraction_of_slowest_stage"] == 0.5
    assert data["machine"]["nproc"] == 2
    assert data["settings"] == {"SCHEDULER_BATCH_SIZE": "500"}
    assert [t["met"] for t in data["targets"]] == [False, True]  # 5,000 records/s is short
    assert data["phases"][0]["cpu_ms_per_1000_records"]["pipeline"] == 330.0
    assert data["summary"]["full speed"]["api"] == {
        "median": 190.0,
        "low": 190.0,
        "high": 190.0,
        "count": 1,
    }


def test_readme_section_is_replaced_between_its_markers_and_nothing_else_moves() -> None:
    readme = "# Bench\n\nIntro.\n"
    once = update_readme(readme, "table one\n", "latest")
    twice = update_readme(once + "\nOutro.\n", "table two", "latest")
    both = update_readme(twice, "backlog table", "backlog")

    assert once == (
        "# Bench\n\nIntro.\n\n<!-- bench:latest:begin -->\ntable one\n<!-- bench:latest:end -->\n"
    )
    assert "table one" not in twice
    assert twice.startswith("# Bench\n\nIntro.\n\n<!-- bench:latest:begin -->\ntable two\n")
    assert twice.endswith("<!-- bench:latest:end -->\n\nOutro.\n")
    assert "table two" in both
    assert both.endswith(
        "<!-- bench:backlog:begin -->\nbacklog table\n<!-- bench:backlog:end -->\n"
    )


# --- profile ----------------------------------------------------------------------------

ROOT = "main (services/api/__main__.py:14);run (asyncio/base_events.py:1)"
HANDLER = "persist_batch (services/api/handlers.py:170)"
COLLAPSED = [
    f"{ROOT};{HANDLER};load (marshmallow/schema.py:700) 6",
    f"{ROOT};{HANDLER};fetch (asyncpg/connection.py:1) 2",
    f"{ROOT} 2",
    "not a sample line",
]


def test_collapsed_stacks_are_parsed_and_summarised_by_self_and_project_time() -> None:
    stacks = parse_collapsed(COLLAPSED)
    profile = summarize(stacks, top=2)

    assert sum(stacks.values()) == 10
    assert profile.samples == 10
    assert profile.self_time == [
        ("load (marshmallow/schema.py:700)", 60.0),
        ("fetch (asyncpg/connection.py:1)", 20.0),
    ]
    # Each sample goes to its deepest project frame: the handler, with what it calls.
    assert profile.project == [
        ("persist_batch (services/api/handlers.py:170)", 80.0),
        ("main (services/api/__main__.py:14)", 20.0),
    ]


def test_samples_without_project_code_are_named_as_such() -> None:
    profile = summarize(parse_collapsed(["select (selectors.py:451) 3", f"{ROOT};{HANDLER} 1"]))

    assert profile.project[0] == ("(no project frame: event loop, drivers)", 75.0)


def test_an_empty_profile_summarises_to_nothing() -> None:
    assert summarize(parse_collapsed([])) == Profile(samples=0, self_time=[], project=[])


def test_flame_graph_draws_each_frame_with_its_share() -> None:
    svg = flame_svg(parse_collapsed(COLLAPSED), "api <test>")

    assert svg.startswith("<svg ") and svg.endswith("</svg>\n")
    assert "api &lt;test&gt; (10 samples)" in svg
    assert "<title>load (marshmallow/schema.py:700) (6 samples, 60.0%)</title>" in svg
    assert svg.count("<rect ") == 1 + 5  # background + five distinct frames


# --- records ----------------------------------------------------------------------------


def test_records_are_valid_input_with_unique_ids_and_cents() -> None:
    produced = list(records("r1", 10, 300))

    ids = [key.decode() for key, _ in produced]
    assert ids[0] == "bench-r1-10" and ids[-1] == "bench-r1-309"
    assert len(set(ids)) == 300
    for key, value in produced:
        record = load_manual(jsoncodec.loads(value))  # the contract the scheduler applies
        assert record["productId"].encode() == key
        assert record["price"] == record["price"].quantize(Decimal("0.01"))
    assert id_prefix("r1") == "bench-r1-"


def test_records_are_the_same_bytes_for_the_same_run() -> None:
    assert list(records("r1", 0, 50)) == list(records("r1", 0, 50))
    assert list(records("r1", 0, 50)) != list(records("r2", 0, 50))


def test_batch_bodies_are_what_the_scheduler_posts_and_what_the_api_persists() -> None:
    values = list(records("r1", 0, 5))

    bodies = batch_bodies(values, topic="t", partitions=2, batch_size=2, timestamp_ms=0)

    assert len(bodies) == 3
    first = jsoncodec.loads(bodies[0])["items"][1]
    assert first["product"]["id"] == "bench-r1-1"
    assert first["product"]["availability"]["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert first["source"] == {"topic": "t", "partition": 1, "offset": 0, "incarnation": None}
    rows = batch_rows(bodies[2])
    assert [product["id"] for product, _ in rows] == ["bench-r1-4"]
    assert rows[0][1] is not None and rows[0][1].partition == 0


def test_the_scaling_table_gives_each_phase_its_ratio_to_one_instance() -> None:
    results = [
        scaling.Result("schedulers", 1, 1000, 2.0, 0.2),
        scaling.Result("schedulers", 2, 1000, 1.0, 0.3),
        scaling.Result("relays", 1, 2000, 1.0, 0.1, slots=16),
        scaling.Result("relays", 3, 2000, 2.0, 0.1, slots=16),
    ]

    table = scaling.render(results, {"load_before": (1.0,), "load_after": (2.0,)})

    assert "| schedulers (2 APIs) | 1 | 1,000 | 2.0 | 500 | 1.00 | 200 |" in table
    assert "| schedulers (2 APIs) | 2 | 1,000 | 1.0 | 1,000 | 2.00 | 300 |" in table
    assert "| relays (16 slots) | 1 | 2,000 | 1.0 | 2,000 | 1.00 | 50 |" in table
    assert "| relays (16 slots) | 3 | 2,000 | 2.0 | 1,000 | 0.50 | 50 |" in table
