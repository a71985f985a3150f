"""What a peer comparison measured and how it is judged and shown: pure, unit-tested."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..report import Latency, Spread, Usage, _num, _spread_cell, _table, spread

PEER = "Connect + Debezium"
FLUXO = "fluxo-dados"
# The processes of each system whose CPU is counted (postgres: the benchmark's own server).
PROCESSES = {
    PEER: ("connect", "kafka", "postgres"),
    FLUXO: ("api", "scheduler", "kafka", "postgres"),
}
# Resident memory: the system's own processes (the broker and the database are shared).
MEMORY = {PEER: ("connect",), FLUXO: ("api", "scheduler")}

# The peer as first measured on this machine (200,000 records over 100,000 ids, 6
# partitions): a run whose peer lands outside VALID_SPREAD of these did not reproduce it.
REFERENCE_THROUGHPUT = 9_960.0
REFERENCE_CPU = (191.0, 194.0)  # ms per 1,000 records, Connect + Kafka + PostgreSQL
VALID_SPREAD = 0.15
# fluxo-dados against the peer (medians): required, then the target.
REQUIRED = (1.2, 0.6)  # ≥ 1.2 x records/s, ≤ 0.6 x CPU per record
TARGET = (1.5, 0.5)
LATENCY_P50_MS = 20.0
LATENCY_P99_MS = 50.0


class Completion:
    """A drain's progress: done once every id's last record has its event on the output.

    ``expected`` maps each id to what its last record looks like (any comparable value);
    an event that shows an earlier version of an id does not count.
    """

    def __init__(self, expected: Mapping[str, Hashable]) -> None:
        self._pending = dict(expected)
        self.last_arrival = 0.0
        self.done = asyncio.Event()
        if not self._pending:
            self.done.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def arrived(self, rid: str, version: Hashable, now: float) -> None:
        if rid in self._pending and self._pending[rid] == version:
            del self._pending[rid]
            self.last_arrival = now
            if not self._pending:
                self.done.set()


def mismatched_rows(expected: Mapping[str, Hashable], rows: Iterable[tuple[str, Hashable]]) -> int:
    """How many ids have no row, or a row other than their last record (extra rows count)."""
    found = dict(rows)
    missing = sum(1 for rid, version in expected.items() if found.get(rid) != version)
    return missing + sum(1 for rid in found if rid not in expected)


@dataclass(frozen=True)
class Run:
    """One drain of one system, and optionally its latency at a fixed rate."""

    system: str
    records: int
    seconds: float  # from the resume to the last id's last event on the output
    complete: bool  # every id's last event arrived and every row equals its last record
    usage: dict[str, Usage]
    latency: Latency | None = None
    rate: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def cpu(self) -> dict[str, float]:
        """CPU ms per 1,000 records of each of the system's processes, and their total."""
        names = PROCESSES[self.system]
        costs = {
            name: self.usage[name].cpu_seconds * 1e6 / self.records
            for name in names
            if name in self.usage
        }
        costs["total"] = sum(costs.values())
        return costs

    def rss_mb(self) -> float | None:
        peaks = [self.usage[name].peak_rss_mb for name in MEMORY[self.system] if name in self.usage]
        known = [peak for peak in peaks if peak is not None]
        return sum(known) if known else None


@dataclass(frozen=True)
class Summary:
    system: str
    runs: int
    complete: int
    throughput: Spread | None
    cpu: dict[str, Spread]
    rss_mb: Spread | None
    p50_ms: Spread | None
    p99_ms: Spread | None


def summarise(runs: Sequence[Run], system: str) -> Summary:
    """The medians (with lowest and highest) over one system's runs."""
    mine = [run for run in runs if run.system == system]
    costs = [run.cpu() for run in mine]
    names = dict.fromkeys(name for cost in costs for name in cost)
    cpu = {name: spread([cost[name] for cost in costs if name in cost]) for name in names}
    latencies = [run.latency for run in mine if run.latency is not None]
    return Summary(
        system=system,
        runs=len(mine),
        complete=sum(run.complete for run in mine),
        throughput=spread([run.throughput for run in mine]),
        cpu={name: value for name, value in cpu.items() if value is not None},
        rss_mb=spread([rss for run in mine if (rss := run.rss_mb()) is not None]),
        p50_ms=spread([latency.p50_ms for latency in latencies]),
        p99_ms=spread([latency.p99_ms for latency in latencies]),
    )


def validity(peer: Summary) -> list[str]:
    """Why the peer's figures do not reproduce the reference measurement (empty: valid)."""
    problems = []
    if peer.throughput is None or peer.complete < peer.runs:
        return ["the peer did not complete every drain"]
    low, high = REFERENCE_THROUGHPUT * (1 - VALID_SPREAD), REFERENCE_THROUGHPUT * (1 + VALID_SPREAD)
    if not low <= peer.throughput.median <= high:
        problems.append(
            f"the peer drained {peer.throughput.median:,.0f} records/s, outside "
            f"{low:,.0f} to {high:,.0f} (±{VALID_SPREAD:.0%} of {REFERENCE_THROUGHPUT:,.0f})"
        )
    total = peer.cpu.get("total")
    low = REFERENCE_CPU[0] * (1 - VALID_SPREAD)
    high = REFERENCE_CPU[1] * (1 + VALID_SPREAD)
    if total is None or not low <= total.median <= high:
        measured = "no" if total is None else f"{total.median:,.0f} ms"
        problems.append(
            f"the peer used {measured} of CPU per 1,000 records, outside {low:,.0f} to "
            f"{high:,.0f} (±{VALID_SPREAD:.0%} of {REFERENCE_CPU[0]:.0f}-{REFERENCE_CPU[1]:.0f})"
        )
    return problems


def ratios(fluxo: Summary, peer: Summary) -> tuple[float, float] | None:
    """fluxo-dados' median records/s and CPU per record, each over the peer's."""
    if fluxo.throughput is None or peer.throughput is None or not peer.throughput.median:
        return None
    fluxo_cpu, peer_cpu = fluxo.cpu.get("total"), peer.cpu.get("total")
    if fluxo_cpu is None or peer_cpu is None or not peer_cpu.median:
        return None
    return fluxo.throughput.median / peer.throughput.median, fluxo_cpu.median / peer_cpu.median


def goals(fluxo: Summary, peer: Summary) -> list[list[str]]:
    """Rows of the goals table: goal, measured, met."""
    rows = []
    found = ratios(fluxo, peer)
    for name, (speed, cpu) in (("required", REQUIRED), ("target", TARGET)):
        if found is None:
            rows.append([f"{name}: ≥ {speed}x records/s, ≤ {cpu}x CPU", "-", "-"])
            continue
        met = found[0] >= speed and found[1] <= cpu
        rows.append(
            [
                f"{name}: ≥ {speed}x records/s, ≤ {cpu}x CPU per record",
                f"{found[0]:.2f}x, {found[1]:.2f}x",
                "yes" if met else "**no**",
            ]
        )
    if fluxo.p50_ms is not None and fluxo.p99_ms is not None:
        met = fluxo.p50_ms.median <= LATENCY_P50_MS and fluxo.p99_ms.median <= LATENCY_P99_MS
        rows.append(
            [
                f"fluxo-dados p50 ≤ {LATENCY_P50_MS:g} ms, p99 ≤ {LATENCY_P99_MS:g} ms at 1,000/s",
                f"p50 {fluxo.p50_ms.median:.1f} ms, p99 {fluxo.p99_ms.median:.1f} ms",
                "yes" if met else "**no**",
            ]
        )
    return rows


def _cpu_cell(summary: Summary, names: Sequence[str]) -> str:
    cells = [_spread_cell(summary.cpu.get(name)) for name in names if name in summary.cpu]
    return " + ".join(cells) if cells else "-"


def render(runs: Sequence[Run], context: Mapping[str, Any]) -> str:
    """The comparison as markdown: medians, each run, validity and goals."""
    peer, fluxo = summarise(runs, PEER), summarise(runs, FLUXO)
    lines = [
        f"### Against Kafka Connect + Debezium, run {context.get('run_id', '?')}, "
        f"{context.get('started_at', '')}",
        "",
        f"Command: `{context.get('command', '')}`  ",
        f"Workload: {context.get('records', 0):,} records over {context.get('ids', 0):,} ids, "
        f"{context.get('partitions', 0)} partitions; latency at "
        f"{context.get('rates', '-')} records/s for {context.get('rate_seconds', 0):g} s.  ",
        f"Load average before {context.get('load_before')}, after {context.get('load_after')}.",
        "",
        "Medians over the runs, lowest and highest in brackets. CPU in ms per 1,000 records "
        "during the drain; resident memory: the peak of Connect, or of the API + the "
        "scheduler; latency: from each input record's Kafka timestamp to its event's "
        "arrival at the benchmark's consumer.",
        "",
    ]
    header = [
        "system",
        "runs",
        "records/s",
        "CPU: Connect, or API + scheduler",
        "Kafka",
        "PostgreSQL",
        "total",
        "resident MB",
        "p50 ms",
        "p99 ms",
    ]
    rows = []
    for summary in (peer, fluxo):
        if not summary.runs:
            continue
        rows.append(
            [
                summary.system,
                f"{summary.runs}" + ("" if summary.complete == summary.runs else " (incomplete)"),
                _spread_cell(summary.throughput),
                _cpu_cell(summary, ("connect", "api", "scheduler")),
                _spread_cell(summary.cpu.get("kafka")),
                _spread_cell(summary.cpu.get("postgres")),
                _spread_cell(summary.cpu.get("total")),
                _spread_cell(summary.rss_mb),
                _spread_cell(summary.p50_ms, 1),
                _spread_cell(summary.p99_ms, 1),
            ]
        )
    lines += _table(header, rows, "lr" + "r" * 8)
    lines += ["", "Each run, in the order they ran:", ""]
    run_rows = []
    for number, run in enumerate(runs, 1):
        cpu = run.cpu()
        latency = run.latency
        run_rows.append(
            [
                str(number),
                run.system,
                "yes" if run.complete else "**no**",
                _num(run.seconds, 1),
                _num(run.throughput),
                " + ".join(
                    _num(cpu[name]) for name in ("connect", "api", "scheduler") if name in cpu
                ),
                _num(cpu.get("kafka")),
                _num(cpu.get("postgres")),
                _num(cpu.get("total")),
                _num(run.rss_mb()),
                _num(latency.p50_ms if latency else None, 1),
                _num(latency.p99_ms if latency else None, 1),
                "; ".join(run.notes),
            ]
        )
    lines += _table(
        ["run", "system", "complete", "drain s", "records/s", "CPU", "Kafka", "PostgreSQL",
         "total", "resident MB", "p50 ms", "p99 ms", "notes"],
        run_rows,
        "llr" + "r" * 9 + "l",
    )  # fmt: skip
    problems = validity(peer) if peer.runs else ["the peer did not run"]
    lines += [""]
    if problems:
        lines.append("**Invalid run**: " + "; ".join(problems) + ".")
    else:
        lines.append(
            f"Valid: the peer is within ±{VALID_SPREAD:.0%} of its reference figures "
            f"({REFERENCE_THROUGHPUT:,.0f} records/s, {REFERENCE_CPU[0]:.0f}-"
            f"{REFERENCE_CPU[1]:.0f} ms per 1,000 records)."
        )
    if peer.runs and fluxo.runs:
        lines.append("")
        if problems:
            lines += ["The goals, which an invalid run does not judge:", ""]
        lines += _table(["goal", "measured", "met"], goals(fluxo, peer), "lll")
    return "\n".join(lines) + "\n"
