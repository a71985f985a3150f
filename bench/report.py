"""The figures of a run and how they are shown: pure functions, unit-tested.

Memory is in MB (10**6 bytes) because the target says "200 MB"; CPU is in % of one core
(so a service pegging a core shows 100) and the machine's in % of all its cores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from typing import Any

from .hops import Hop, table_rows

TARGET_THROUGHPUT = 5_000.0  # records/s end to end
TARGET_FRACTION = 0.5  # of the slowest raw stage
TARGET_P99_MS = 100.0
TARGET_P99_RATE = 1_000.0  # records/s at which the p99 target holds
TARGET_RSS_MB = 200.0  # per service while a backlog drains


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


def full_speed(report: Report) -> Phase | None:
    return next((phase for phase in report.phases if phase.name == "full speed"), None)


def slowest_stage(stages: Sequence[Stage]) -> Stage | None:
    return min(stages, key=lambda stage: stage.throughput, default=None)


def fraction_of_slowest(report: Report) -> float | None:
    """The pipeline's sustained throughput over the slowest raw stage's."""
    phase, slowest = full_speed(report), slowest_stage(report.stages)
    if phase is None or slowest is None or slowest.throughput == 0:
        return None
    return phase.throughput / slowest.throughput


def targets(report: Report) -> list[Target]:
    """The issue's targets that this run measured, met or not."""
    found: list[Target] = []
    phase = full_speed(report)
    if phase is not None:
        found.append(
            Target(
                f"≥ {TARGET_THROUGHPUT:,.0f} records/s sustained end to end",
                f"{phase.throughput:,.0f} records/s",
                phase.throughput >= TARGET_THROUGHPUT and phase.arrived == phase.records,
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
    for paced in report.phases:
        if paced.rate == TARGET_P99_RATE and paced.latency is not None:
            found.append(
                Target(
                    f"p99 ≤ {TARGET_P99_MS:.0f} ms at {TARGET_P99_RATE:,.0f} records/s",
                    f"p99 {paced.latency.p99_ms:,.1f} ms",
                    paced.latency.p99_ms <= TARGET_P99_MS and paced.arrived == paced.records,
                )
            )
    for backlog in report.phases:
        if backlog.name == "backlog":
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


def render_markdown(report: Report) -> str:
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
        fastest = full_speed(report)
        if fastest is not None:
            costs = ", ".join(f"{n} {ms:,.0f} ms" for n, ms in cpu_per_thousand(fastest).items())
            lines += [
                "",
                "CPU per 1,000 records at full speed (steadier than records/s on a shared "
                f"machine): {costs}.",
            ]
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
        raw["cpu_ms_per_1000_records"] = cpu_per_thousand(phase)
    for stage, raw in zip(report.stages, data["stages"], strict=True):
        raw["throughput"] = round(stage.throughput, 1)
    fraction = fraction_of_slowest(report)
    data["fraction_of_slowest_stage"] = None if fraction is None else round(fraction, 3)
    data["targets"] = [asdict(t) for t in targets(report)]
    return data


def update_readme(readme: str, text: str, name: str) -> str:
    """Put ``text`` between the README's ``bench:<name>`` markers, or append it with them."""
    begin_mark, end_mark = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin_mark}\n{text.rstrip()}\n{end_mark}"
    begin, end = readme.find(begin_mark), readme.find(end_mark)
    if begin == -1 or end < begin:
        return readme.rstrip() + "\n\n" + block + "\n"
    return readme[:begin] + block + readme[end + len(end_mark) :]
