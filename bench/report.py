"""The figures of a run and how they are shown: pure functions, unit-tested.

Memory is in MB (10**6 bytes) because the target says "200 MB"; CPU is in % of one core
(so a service pegging a core shows 100) and the machine's in % of all its cores.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from typing import Any

from .hops import Hop, table_rows

TARGET_THROUGHPUT = 12_000.0  # records/s end to end
TARGET_FRACTION = 0.5  # of the slowest raw stage
TARGET_RATE = 1_000.0  # records/s of the everyday targets below
TARGET_P50_MS = 20.0
TARGET_P99_MS = 50.0
TARGET_PIPELINE_CPU = 40.0  # % of one core for PIPELINE's processes together
TARGET_RSS_MB = 150.0  # per service while a backlog drains
# The processes that make up the pipeline (the load generator is not one of them).
PIPELINE = ("api", "scheduler", "kafka", "postgres")


@dataclass(frozen=True)
class Usage:
    """One process over one phase. RSS figures only for the Python services."""

    peak_rss_mb: float | None
    hwm_mb: float | None  # VmHWM: the peak since the process started, not just this phase
    cpu_percent: float
    cpu_seconds: float


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class Phase:
    """One load on the pipeline, measured at ``produtos-persistidos``.

    ``seconds`` runs from the first record produced (for a backlog: from the scheduler's
    resume) to the last of this phase's records arriving.
    """

    name: str
    rate: float | None  # records/s the producer was paced at; None for full speed
    records: int
    arrived: int
    produce_seconds: float  # first send to the last broker acknowledgement
    seconds: float
    latency: Latency | None
    usage: dict[str, Usage]
    machine_cpu_percent: float
    # Each hop's p50/p99 over the phase, from the services' histograms.
    hops: list[Hop] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.arrived / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Stage:
    """One raw stage alone: the same records through one library, no pipeline around it."""

    name: str
    records: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Target:
    text: str
    measured: str
    met: bool


@dataclass(frozen=True)
class Profile:
    """Where a service spent its CPU, from py-spy's samples (idle time is not sampled)."""

    samples: int
    self_time: list[tuple[str, float]]  # (function, % of samples) with the most self time
    # The project's functions, each with the library code it calls (see profile.summarize).
    project: list[tuple[str, float]]


@dataclass
class Report:
    run_id: str
    started_at: str  # ISO 8601, UTC
    command: str
    machine: dict[str, Any]
    settings: dict[str, str]
    load_before: Sequence[float]
    load_after: Sequence[float] = ()
    phases: list[Phase] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)  # per service


# --- figures -------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted values: a value that was actually observed."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


def latency(seconds: Sequence[float]) -> Latency | None:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)

    def ms(value: float) -> float:
        return round(value * 1000, 1)

    return Latency(
        p50_ms=ms(percentile(ordered, 50)),
        p95_ms=ms(percentile(ordered, 95)),
        p99_ms=ms(percentile(ordered, 99)),
        max_ms=ms(ordered[-1]),
    )


def cpu_per_thousand(phase: Phase) -> dict[str, float]:
    """CPU milliseconds each process spent per 1,000 records of the phase.

    Less sensitive than records/s to what else runs on the machine: another client slows
    the pipeline down but does not make a record cost our processes more CPU (much).
    """
    if not phase.records:
        return {}
    return {
        name: round(usage.cpu_seconds * 1e6 / phase.records, 1)
        for name, usage in phase.usage.items()
    }


def phases_named(report: Report) -> dict[str, list[Phase]]:
    """The phases grouped by name, in the order they first ran (``--repeat`` runs each N times)."""
    grouped: dict[str, list[Phase]] = {}
    for phase in report.phases:
        grouped.setdefault(phase.name, []).append(phase)
    return grouped


@dataclass(frozen=True)
class Spread:
    """The median of a figure over the repeats of a phase, and its lowest and highest."""

    median: float
    low: float
    high: float
    count: int


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def pipeline_cpu_percent(phase: Phase) -> float:
    """CPU of the pipeline's own processes together, in % of one core."""
    return sum(phase.usage[name].cpu_percent for name in PIPELINE if name in phase.usage)


def cpu_costs(phase: Phase) -> dict[str, float]:
    """CPU ms per 1,000 records of each process, and of the pipeline's together."""
    costs = cpu_per_thousand(phase)
    if any(name in costs for name in PIPELINE):
        costs["pipeline"] = round(sum(costs.get(name, 0.0) for name in PIPELINE), 1)
    return costs


def cpu_summary(phases: Sequence[Phase]) -> dict[str, Spread]:
    """Per process (and ``pipeline``), CPU ms per 1,000 records over a phase's repeats."""
    costs = [cpu_costs(phase) for phase in phases]
    order = {name: place for place, name in enumerate(HEADLINE_PROCESSES)}
    names = sorted(
        dict.fromkeys(name for cost in costs for name in cost),
        key=lambda name: order.get(name, len(order)),
    )
    found = {name: spread([cost[name] for cost in costs if name in cost]) for name in names}
    return {name: value for name, value in found.items() if value is not None}


def median_throughput(phases: Sequence[Phase]) -> float:
    return statistics.median(phase.throughput for phase in phases) if phases else 0.0


def slowest_stage(stages: Sequence[Stage]) -> Stage | None:
    return min(stages, key=lambda stage: stage.throughput, default=None)


def fraction_of_slowest(report: Report) -> float | None:
    """The pipeline's full-speed throughput (median of repeats) over the slowest raw stage's."""
    fastest, slowest = phases_named(report).get("full speed"), slowest_stage(report.stages)
    if not fastest or slowest is None or slowest.throughput == 0:
        return None
    return median_throughput(fastest) / slowest.throughput


def targets(report: Report) -> list[Target]:
    """The targets that this run measured, met or not; each on the median of the repeats."""
    found: list[Target] = []
    grouped = phases_named(report)
    fastest = grouped.get("full speed")
    if fastest:
        throughput = median_throughput(fastest)
        found.append(
            Target(
                f"≥ {TARGET_THROUGHPUT:,.0f} records/s sustained end to end",
                f"{throughput:,.0f} records/s",
                throughput >= TARGET_THROUGHPUT
                and all(phase.arrived == phase.records for phase in fastest),
            )
        )
    fraction = fraction_of_slowest(report)
    slowest = slowest_stage(report.stages)
    if fraction is not None and slowest is not None:
        found.append(
            Target(
                f"≥ {TARGET_FRACTION} of the slowest raw stage",
                f"{fraction:.2f} of {slowest.name} ({slowest.throughput:,.0f} records/s)",
                fraction >= TARGET_FRACTION,
            )
        )
    everyday = [phase for phase in report.phases if phase.rate == TARGET_RATE]
    timed = [phase.latency for phase in everyday if phase.latency is not None]
    if everyday and timed:
        p50 = statistics.median(latency.p50_ms for latency in timed)
        p99 = statistics.median(latency.p99_ms for latency in timed)
        cpu = statistics.median(pipeline_cpu_percent(phase) for phase in everyday)
        complete = all(phase.arrived == phase.records for phase in everyday)
        found += [
            Target(
                f"p99 ≤ {TARGET_P99_MS:.0f} ms and p50 ≤ {TARGET_P50_MS:.0f} ms "
                f"at {TARGET_RATE:,.0f} records/s",
                f"p99 {p99:,.1f} ms, p50 {p50:,.1f} ms",
                p99 <= TARGET_P99_MS and p50 <= TARGET_P50_MS and complete,
            ),
            Target(
                f"{' + '.join(PIPELINE)} ≤ {TARGET_PIPELINE_CPU:.0f} % of one core "
                f"at {TARGET_RATE:,.0f} records/s",
                f"{cpu:,.0f} %",
                cpu <= TARGET_PIPELINE_CPU,
            ),
        ]
    for backlog in grouped.get("backlog", []):
        peaks = {
            name: usage.peak_rss_mb
            for name, usage in backlog.usage.items()
            if usage.peak_rss_mb is not None
        }
        found.append(
            Target(
                f"a backlog of {backlog.records:,} drains with each service "
                f"under {TARGET_RSS_MB:.0f} MB RSS",
                f"drained in {backlog.seconds:,.1f} s; peak RSS "
                + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks.items()),
                backlog.arrived == backlog.records
                and all(mb < TARGET_RSS_MB for mb in peaks.values()),
            )
        )
    return found


def baseline_costs(data: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """From a results file (``to_json``): per phase name, the median CPU ms per 1,000 records
    of each process over its repeats. Files written before repeats existed read the same."""
    costs: dict[str, dict[str, list[float]]] = {}
    for phase in data.get("phases", []):
        per_process = costs.setdefault(str(phase["name"]), {})
        for name, value in (phase.get("cpu_ms_per_1000_records") or {}).items():
            per_process.setdefault(name, []).append(float(value))
        if "pipeline" not in (phase.get("cpu_ms_per_1000_records") or {}):
            found = [phase["cpu_ms_per_1000_records"].get(name) for name in PIPELINE]
            if any(value is not None for value in found):
                total = sum(float(value) for value in found if value is not None)
                per_process.setdefault("pipeline", []).append(round(total, 1))
    return {
        phase: {name: statistics.median(values) for name, values in processes.items()}
        for phase, processes in costs.items()
    }


def newest_results(names: Iterable[str], mode: str) -> str | None:
    """The newest results file of a mode among file names: ``<YYYY-MM-DD>.json`` for the
    plain run, ``<YYYY-MM-DD>-<mode>.json`` for the others."""
    suffix = ".json" if mode == "latest" else f"-{mode}.json"
    dated = [
        name
        for name in names
        if name[:10].replace("-", "").isdigit()
        and len(name) == 10 + len(suffix)
        and name.endswith(suffix)
    ]
    return max(dated, default=None)


def compare(report: Report, baseline: Mapping[str, Any]) -> list[list[str]]:
    """Rows (phase, process, now, baseline, change) for what both runs measured."""
    before = baseline_costs(baseline)
    rows = []
    for name, phases in phases_named(report).items():
        for process, now in cpu_summary(phases).items():
            then = before.get(name, {}).get(process)
            if then is None:
                continue
            change = f"{(now.median - then) / then * 100:+.0f} %" if then else "-"
            rows.append([name, process, _num(now.median), _num(then), change])
    return rows


# --- rendering -----------------------------------------------------------------------


PHASE_COLUMNS = (
    *("phase", "records", "arrived", "produced in s", "end to end s", "records/s"),
    *("p50 ms", "p95 ms", "p99 ms", "max ms"),
)
USAGE_COLUMNS = (
    *("phase", "api RSS MB", "scheduler RSS MB", "api CPU %", "scheduler CPU %"),
    *("kafka CPU %", "postgres CPU %", "bench CPU %", "machine busy %"),
)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table; ``align`` has an ``l`` or ``r`` per column, by default the first
    column (a name) left and the others (numbers) right."""
    align = align or "l" + "r" * (len(header) - 1)
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if side == "r" else "---" for side in align) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


HEADLINE_PROCESSES = (*PIPELINE, "pipeline", "bench")


def _spread_cell(value: Spread | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if value.count == 1:
        return _num(value.median, digits)
    return f"{_num(value.median, digits)} ({_num(value.low, digits)} to {_num(value.high, digits)})"


def headline_rows(report: Report) -> list[list[str]]:
    """Per phase: CPU ms per 1,000 records of each process, records/s, p50 and p99, each as
    the median over the repeats with the lowest and highest in brackets."""
    rows = []
    for name, phases in phases_named(report).items():
        cpu = cpu_summary(phases)
        timed = [phase.latency for phase in phases if phase.latency is not None]
        rows.append(
            [
                name,
                str(len(phases)),
                *(_spread_cell(cpu.get(process)) for process in HEADLINE_PROCESSES),
                _spread_cell(spread([phase.throughput for phase in phases])),
                _spread_cell(spread([latency.p50_ms for latency in timed]), 1),
                _spread_cell(spread([latency.p99_ms for latency in timed]), 1),
            ]
        )
    return rows


def render_markdown(
    report: Report, baseline: Mapping[str, Any] | None = None, baseline_name: str = ""
) -> str:
    """The run's tables; with ``baseline`` (a results file), its CPU costs beside this run's."""
    machine = report.machine
    lines = [
        f"### Run {report.run_id}, {report.started_at}",
        "",
        f"Command: `{report.command}`  ",
        f"Machine: {machine.get('nproc')} cores of {machine.get('cpu_model')}, "
        f"{machine.get('memory_gib')} GiB, Linux {machine.get('kernel')}, "
        f"Python {machine.get('python')}; load average before "
        f"{' / '.join(f'{x:.2f}' for x in report.load_before)}, after "
        f"{' / '.join(f'{x:.2f}' for x in report.load_after)} (1 / 5 / 15 min).  ",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items()),
    ]
    if report.phases:
        lines += [
            "",
            "CPU ms per 1,000 records (the headline: steadier than records/s on a shared "
            "machine), records/s and latency: median over the repeats of each phase, lowest "
            "and highest in brackets; pipeline = " + " + ".join(PIPELINE) + ".",
            "",
            *_table(
                [
                    *("phase", "runs"),
                    *(f"{process} ms" for process in HEADLINE_PROCESSES),
                    *("records/s", "p50 ms", "p99 ms"),
                ],
                headline_rows(report),
            ),
        ]
        compared = compare(report, baseline) if baseline is not None else []
        if compared:
            lines += [
                "",
                f"Against the last recorded run ({baseline_name or 'baseline'}), CPU ms per "
                "1,000 records (medians):",
                "",
                *_table(["phase", "process", "this run", "recorded", "change"], compared, "llrrr"),
            ]
        lines += [
            "",
            "End to end: from each source record's Kafka timestamp to its arrival on "
            "`produtos-persistidos`; records/s = arrived / (last arrival - first produce; "
            "for a backlog, - the scheduler's resume).",
            "",
            *_table(
                PHASE_COLUMNS,
                [
                    [
                        phase.name,
                        _num(phase.records),
                        _num(phase.arrived),
                        _num(phase.produce_seconds, 1),
                        _num(phase.seconds, 1),
                        _num(phase.throughput),
                        *(
                            _num(getattr(phase.latency, name, None), 1)
                            for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
                        ),
                    ]
                    for phase in report.phases
                ],
            ),
            "",
            "Resources during each phase: peak RSS sampled every 100 ms (or VmHWM, if it "
            "rose during the phase); CPU in % of one "
            "core (postgres: all its processes, other clients' included; bench: this "
            "load generator and its consumer); machine: % of all cores busy, whoever "
            "used them.",
            "",
            *_table(
                USAGE_COLUMNS,
                [
                    [
                        phase.name,
                        _rss(phase, "api"),
                        _rss(phase, "scheduler"),
                        *(
                            _num(phase.usage[name].cpu_percent) if name in phase.usage else "-"
                            for name in ("api", "scheduler", "kafka", "postgres", "bench")
                        ),
                        _num(phase.machine_cpu_percent),
                    ]
                    for phase in report.phases
                ],
            ),
        ]
        last = report.phases[-1]
        hwm = ", ".join(
            f"{name} {usage.hwm_mb:,.0f} MB"
            for name, usage in last.usage.items()
            if usage.hwm_mb is not None
        )
        lines += ["", f"VmHWM (peak RSS since each service started): {hwm}."]
    hop_rows = [row for phase in report.phases for row in table_rows(phase.name, phase.hops)]
    if hop_rows:
        lines += [
            "",
            "Where the time goes: each hop's histogram over the phase, read from the services' "
            "/metrics before and after it (p50 and p99 interpolated within buckets, as "
            "Prometheus' histogram_quantile does; the end-to-end row is the API's "
            "fluxo_end_to_end_latency_seconds, up to the broker's acknowledgement).",
            "",
            *_table(["phase", "hop", "observations", "p50 ms", "p99 ms"], hop_rows, "llrrr"),
        ]
    if report.stages:
        lines += [
            "",
            "Raw stages: the same records through each library alone, the pipeline idle.",
            "",
            *_table(
                ["stage", "records", "seconds", "records/s"],
                [
                    [
                        stage.name,
                        _num(stage.records),
                        _num(stage.seconds, 2),
                        _num(stage.throughput),
                    ]
                    for stage in report.stages
                ],
            ),
        ]
        fraction, slowest = fraction_of_slowest(report), slowest_stage(report.stages)
        if fraction is not None and slowest is not None:
            lines += [
                "",
                f"**Pipeline at full speed = {fraction:.2f} of the slowest stage** "
                f"({slowest.name}).",
            ]
    found = targets(report)
    if found:
        lines += [
            "",
            *_table(
                ["target", "measured", "met"],
                [[t.text, t.measured, "yes" if t.met else "**no**"] for t in found],
                align="lll",
            ),
        ]
    if report.profiles:
        lines += [
            "",
            "Profiled run: py-spy sampled both services during the full-speed phase, "
            "which slows them a little.",
        ]
    for service, profile in report.profiles.items():
        lines += [
            "",
            f"Profile of the {service} at full speed (py-spy, {profile.samples:,} samples "
            "of CPU time):",
            "",
            *_table(
                ["most self time", "%", "project function (with the libraries it calls)", "%"],
                [
                    [_code(own[0]), f"{own[1]:.1f}", _code(mine[0]), f"{mine[1]:.1f}"]
                    for own, mine in zip_longest(
                        profile.self_time, profile.project, fillvalue=("", 0.0)
                    )
                ],
                align="lrlr",
            ),
        ]
    return "\n".join(lines) + "\n"


def _code(name: str) -> str:
    return f"`{name}`" if name else ""


def _rss(phase: Phase, name: str) -> str:
    usage = phase.usage.get(name)
    return _num(usage.peak_rss_mb if usage else None)


def to_json(report: Report) -> dict[str, Any]:
    """Every figure, derived ones included, for ``bench/results/<date>.json``."""
    data = asdict(report)
    for phase, raw in zip(report.phases, data["phases"], strict=True):
        raw["throughput"] = round(phase.throughput, 1)
        raw["cpu_ms_per_1000_records"] = cpu_costs(phase)
        raw["pipeline_cpu_percent"] = round(pipeline_cpu_percent(phase), 1)
    for stage, raw in zip(report.stages, data["stages"], strict=True):
        raw["throughput"] = round(stage.throughput, 1)
    fraction = fraction_of_slowest(report)
    data["fraction_of_slowest_stage"] = None if fraction is None else round(fraction, 3)
    data["targets"] = [asdict(t) for t in targets(report)]
    data["summary"] = {
        name: {process: asdict(value) for process, value in cpu_summary(phases).items()}
        for name, phases in phases_named(report).items()
    }
    return data


def update_readme(readme: str, text: str, name: str) -> str:
    """Put ``text`` between the README's ``bench:<name>`` markers, or append it with them."""
    begin_mark, end_mark = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin_mark}\n{text.rstrip()}\n{end_mark}"
    begin, end = readme.find(begin_mark), readme.find(end_mark)
    if begin == -1 or end < begin:
        return readme.rstrip() + "\n\n" + block + "\n"
    return readme[:begin] + block + readme[end + len(end_mark) :]
