"""``python -m bench --peer``'s pure parts: the peer's configuration, the workload both
systems get, the completeness check, the medians and the validity of a run."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import orjson
import pytest

from bench.__main__ import parse_args, peer_options
from bench.peer import config
from bench.peer.figures import (
    FLUXO,
    PEER,
    Completion,
    Run,
    goals,
    mismatched_rows,
    render,
    summarise,
    validity,
)
from bench.report import Latency, Usage
from tests.unit.test_kafka_jars import ROOT, jars

DATABASE = config.Database("localhost", 27154, "bench_peer_x", "fluxo", "secret")


def test_the_sink_is_configured_as_the_comparison_was_measured() -> None:
    sink = config.sink_config(topic="in", database=DATABASE)
    assert sink["connector.class"] == "io.debezium.connector.jdbc.JdbcSinkConnector"
    assert {
        key: sink[key]
        for key in (
            "tasks.max",
            "batch.size",
            "consumer.override.max.poll.records",
            "insert.mode",
            "primary.key.mode",
            "primary.key.fields",
            "use.reduction.buffer",
            "value.converter.schemas.enable",
            "topics",
            "connection.url",
        )
    } == {
        "tasks.max": "2",
        "batch.size": "500",
        "consumer.override.max.poll.records": "500",
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "id",
        "use.reduction.buffer": "false",
        "value.converter.schemas.enable": "true",
        "topics": "in",
        "connection.url": "jdbc:postgresql://localhost:27154/bench_peer_x",
    }


def test_the_source_republishes_plain_rows_keyed_by_id_on_the_output_topic() -> None:
    source = config.source_config(topic="out", database=DATABASE, slot="slot_x")
    assert source["plugin.name"] == "pgoutput"
    assert source["snapshot.mode"] == "no_data"
    assert source["slot.name"] == "slot_x"
    assert source["database.port"] == "27154"
    transforms = source["transforms"].split(",")
    types = [source[f"transforms.{name}.type"] for name in transforms]
    assert types == [
        "io.debezium.transforms.ExtractNewRecordState",
        "org.apache.kafka.connect.transforms.RegexRouter",
        "org.apache.kafka.connect.transforms.ExtractField$Key",
    ]
    assert source["transforms.route.replacement"] == "out"
    assert source["transforms.key.field"] == "id"
    assert source["value.converter.schemas.enable"] == "false"


def test_the_worker_allows_the_sinks_consumer_override() -> None:
    worker = config.worker_properties(
        bootstrap="localhost:1", rest_port=2, plugin_path="/p", offsets_file="/o"
    )
    assert worker["connector.client.config.override.policy"] == "All"
    assert worker["listeners"] == "http://127.0.0.1:2"
    text = config.properties(worker)
    assert "plugin.discovery=service_load\n" in text
    assert text.count("\n") == len(worker)


def test_the_workload_inserts_every_id_then_updates_ids_drawn_among_them() -> None:
    first = list(config.workload("run", 50, 20))
    assert first == list(config.workload("run", 50, 20))  # the same for both systems
    numbers = [number for number, _ in first]
    assert numbers[:20] == list(range(20))
    assert all(0 <= number < 20 for number in numbers[20:])
    assert len(Counter(numbers)) <= 20
    ids = [record["productId"] for _, record in first]
    assert ids[0] == "bench-run-0" and ids[25] == f"bench-run-{numbers[25]}"
    with pytest.raises(ValueError, match=r"ids must be in 1\.\.50"):
        list(config.workload("run", 50, 51))


def test_every_form_of_a_record_compares_equal() -> None:
    _, record = next(config.workload("run", 1, 1))
    expected = config.row(record)
    envelope = orjson.loads(config.peer_value(record))
    assert [f["field"] for f in envelope["schema"]["fields"]] == [
        *config.ROW_COLUMNS,
        "category",
    ]
    assert config.peer_event_row(envelope["payload"]) == expected
    document = {
        "id": record["productId"],
        "name": record["productName"],
        "description": record["productDescription"],
        "pricing": {"amount": str(Decimal(str(record["price"]))), "currency": record["currency"]},
        "availability": {"quantity": record["stockQuantity"], "timestamp": "2026-01-01T00:00Z"},
        "category": record["category"],
    }
    assert config.fluxo_event_row(document) == expected
    stored = (
        record["productId"],
        record["productName"],
        record["productDescription"],
        Decimal(str(record["price"])),
        record["currency"],
        record["stockQuantity"],
        record["category"],
    )
    assert config.table_row(stored) == expected


def test_a_drain_completes_with_each_ids_last_version_only() -> None:
    async def scenario() -> None:
        completion = Completion({"a": 2, "b": 1})
        completion.arrived("a", 1, 10.0)  # an earlier version of a
        completion.arrived("b", 1, 11.0)
        completion.arrived("c", 1, 12.0)  # not this run's
        assert completion.pending == 1 and not completion.done.is_set()
        completion.arrived("a", 2, 13.0)
        assert completion.done.is_set() and completion.last_arrival == 13.0
        completion.arrived("a", 2, 14.0)  # a duplicate: the drain ended before
        assert completion.last_arrival == 13.0
        assert Completion({}).done.is_set()

    asyncio.run(scenario())


def test_rows_that_are_missing_stale_or_extra_are_counted() -> None:
    expected = {"a": 2, "b": 1, "c": 5}
    assert mismatched_rows(expected, [("a", 2), ("b", 1), ("c", 5)]) == 0
    assert mismatched_rows(expected, [("a", 1), ("b", 1), ("x", 1)]) == 3


def usage(cpu_seconds: float, rss: float | None = None) -> Usage:
    return Usage(rss, rss, 50.0, cpu_seconds)


def peer_run(seconds: float, connect: float, p50: float = 500.0) -> Run:
    return Run(
        PEER,
        200_000,
        seconds,
        True,
        {"connect": usage(connect, 1000.0), "kafka": usage(5.6), "postgres": usage(4.0)},
        Latency(p50, p50, p50 * 2, p50 * 3),
        1000.0,
    )


def fluxo_run(seconds: float, api: float) -> Run:
    return Run(
        FLUXO,
        200_000,
        seconds,
        True,
        {
            "api": usage(api, 74.0),
            "scheduler": usage(4.4, 84.0),
            "kafka": usage(3.8),
            "postgres": usage(3.6),
            "bench": usage(9.0),  # the load generator: not the system's
        },
        Latency(16.0, 20.0, 26.0, 40.0),
        1000.0,
    )


def test_cpu_per_thousand_records_counts_the_systems_processes_only() -> None:
    run = fluxo_run(20.0, api=14.6)
    assert run.cpu() == pytest.approx(
        {"api": 73.0, "scheduler": 22.0, "kafka": 19.0, "postgres": 18.0, "total": 132.0}
    )
    assert run.rss_mb() == 158.0
    assert run.throughput == 10_000


def test_summaries_give_medians_and_spread_per_system() -> None:
    runs = [peer_run(20.0, 28.4), fluxo_run(16.0, 14.6), peer_run(21.0, 29.0, 700.0)]
    runs.append(peer_run(19.0, 30.0, 600.0))
    peer = summarise(runs, PEER)
    assert peer.runs == 3 and peer.complete == 3
    assert peer.throughput is not None
    assert peer.throughput.median == 10_000
    assert (peer.throughput.low, peer.throughput.high) == pytest.approx((9523.8, 10526.3), 0.01)
    assert peer.cpu["connect"].median == pytest.approx(145.0)
    assert peer.p50_ms is not None and peer.p50_ms.median == 600.0
    assert summarise(runs, FLUXO).runs == 1


def test_a_peer_within_15_percent_of_its_reference_is_valid() -> None:
    assert validity(summarise([peer_run(20.0, 28.4)], PEER)) == []  # 10,000/s, 192 ms


def test_a_peer_outside_15_percent_makes_the_run_invalid() -> None:
    slow = validity(summarise([peer_run(40.0, 28.4)], PEER))  # 5,000/s
    assert len(slow) == 1 and "5,000 records/s, outside 8,466 to 11,454" in slow[0]
    costly = validity(summarise([peer_run(20.0, 60.0)], PEER))  # 348 ms per 1,000
    assert len(costly) == 1 and "348 ms" in costly[0]
    incomplete = summarise([replace_complete(peer_run(20.0, 28.4))], PEER)
    assert validity(incomplete) == ["the peer did not complete every drain"]


def replace_complete(run: Run) -> Run:
    return Run(run.system, run.records, 0.0, False, run.usage)


def test_goals_compare_the_medians() -> None:
    runs = [peer_run(20.0, 28.4), fluxo_run(16.0, 14.6)]
    rows = goals(summarise(runs, FLUXO), summarise(runs, PEER))
    assert rows[0][1:] == ["1.25x, 0.69x", "**no**"]  # CPU ratio 132 / 192
    assert rows[1][2] == "**no**"
    assert rows[2] == [
        "fluxo-dados p50 ≤ 20 ms, p99 ≤ 50 ms at 1,000/s",
        "p50 16.0 ms, p99 26.0 ms",
        "yes",
    ]


def test_the_table_marks_an_invalid_run_and_shows_both_systems() -> None:
    runs = [peer_run(40.0, 28.4), fluxo_run(16.0, 14.6)]
    text = render(runs, {"run_id": "r1", "records": 200_000, "ids": 100_000})
    assert "| Connect + Debezium | 1 | 5,000 | 142 | 28 | 20 | 190 | 1,000 | 500.0 |" in text
    assert "| fluxo-dados | 1 | 12,500 | 73 + 22 | 19 | 18 | 132 | 158 | 16.0 | 26.0 |" in text
    assert "**Invalid run**: the peer drained 5,000 records/s" in text
    assert "The goals, which an invalid run does not judge:" in text


def test_peer_mode_defaults_to_the_issues_workload() -> None:
    options = peer_options(parse_args(["--peer"]))
    assert (options.records, options.ids, options.partitions) == (200_000, 100_000, 6)
    assert options.rates == [1000.0]
    smoke = peer_options(parse_args(["--peer", "--records", "20000", "--repeat", "3"]))
    assert (smoke.records, smoke.ids, smoke.repeat) == (20_000, 10_000, 3)


def test_the_jar_list_names_an_artifact_with_a_classifier_and_a_type() -> None:
    line = "io.debezium:debezium-connector-jdbc:3.6.0.Final:plugin:tar.gz " + "0" * 64
    [entry] = jars.parse(line)
    assert entry[4] == "debezium-connector-jdbc-3.6.0.Final-plugin.tar.gz"
    assert jars.repository_path(*entry[:3], entry[4]) == (
        "io/debezium/debezium-connector-jdbc/3.6.0.Final/"
        "debezium-connector-jdbc-3.6.0.Final-plugin.tar.gz"
    )


def test_the_committed_peer_list_holds_connect_and_both_connectors() -> None:
    listed = jars.parse((ROOT / "bench" / "peer" / "jars.txt").read_text(encoding="utf-8"))
    names = {entry[4] for entry in listed}
    assert {
        "connect-runtime-4.1.1.jar",
        "connect-json-4.1.1.jar",
        "connect-api-4.1.1.jar",
        "connect-transforms-4.1.1.jar",
        "debezium-connector-jdbc-3.6.0.Final-plugin.tar.gz",
        "debezium-connector-postgres-3.6.0.Final-plugin.tar.gz",
    } <= names
    broker = jars.parse((ROOT / "scripts" / "kafka" / "jars.txt").read_text(encoding="utf-8"))
    assert not {entry[:2] for entry in broker} & {entry[:2] for entry in listed}
