"""The processes under test (pids from ``.run/``), their memory and CPU, and the machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from .report import Usage
from .settings import RUN_DIR

# Measured processes: name in .run/ → what its command line must contain (pids get reused).
SERVICES = {"api": "services.api", "scheduler": "services.scheduler"}
# Also sampled for CPU, to tell where the machine's two cores went.
BROKER = {"kafka": "kafka.Kafka"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


class BenchError(RuntimeError):
    """The benchmark cannot run as asked (a service is down, a setting is wrong)."""


def pid_of(name: str, pattern: str) -> int:
    """The live process that ``make up`` recorded in ``.run/<name>.pid``."""
    try:
        pid = int((RUN_DIR / f"{name}.pid").read_text().strip())
        command = (PROC / str(pid) / "cmdline").read_bytes()
    except (OSError, ValueError):
        raise BenchError(
            f"{name} is not running (no live pid in .run/{name}.pid): make up"
        ) from None
    if pattern.encode() not in command:
        raise BenchError(f".run/{name}.pid names pid {pid}, which is not {pattern}: make up")
    return pid


def status_kib(pid: int, field: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in KiB (VmRSS, VmHWM); None once the process is gone."""
    try:
        with open(PROC / str(pid) / "status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid: int) -> int:
    """User + system time of a process so far, in clock ticks (0 once it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def postgres_ticks(server: int | None = None) -> dict[int, int]:
    """CPU ticks of every ``postgres`` process: the server and all its backends; with
    ``server`` (a postmaster's pid), of that server and its children only."""
    ticks: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            fields = rest.split()
            pid = int(entry.name)
            if server is None or server in (pid, int(fields[1])):  # fields[1]: the parent
                ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_spent(before: Mapping[int, int], after: Mapping[int, int]) -> int:
    """Ticks spent between two readings of processes' CPU (pid → ticks), process by process.

    A process that started in between counts from 0; one that ended takes its ticks with it
    (a lower bound), rather than taking all it had spent before off the sum.
    """
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all cores since boot, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


class Sampler:
    """Peak RSS (every ``interval`` seconds) and CPU of the services over one phase.

    Used as ``async with Sampler(pids) as sampler: ...``; ``usage`` is filled on exit.
    RSS is sampled because VmHWM is the peak since the process started, not in the phase.
    """

    def __init__(
        self,
        pids: dict[str, int],
        interval: float = 0.1,
        *,
        memory: Iterable[str] = SERVICES,
        postgres: int | None = None,
    ) -> None:
        # The benchmark itself too: producer and consumer share the machine's two cores.
        self._pids = {**pids, "bench": os.getpid()}
        self._memory = [name for name in memory if name in self._pids]  # RSS sampled
        self._server = postgres  # a postmaster: only its processes count as postgres
        self._interval = interval
        self._peak_kib: dict[str, int] = dict.fromkeys(self._pids, 0)
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._ticks: dict[str, int] = {}
        self._hwm_kib: dict[str, int] = {}
        self._postgres: dict[int, int] = {}
        self._machine = (0, 0)
        self.usage: dict[str, Usage] = {}
        self.machine_cpu_percent = 0.0

    async def __aenter__(self) -> Sampler:
        self._started = time.monotonic()
        self._ticks = {name: cpu_ticks(pid) for name, pid in self._pids.items()}
        self._hwm_kib = {name: status_kib(pid, "VmHWM") or 0 for name, pid in self._pids.items()}
        self._postgres = postgres_ticks(self._server)
        self._machine = machine_ticks()
        self._sample()
        self._task = asyncio.create_task(self._run(), name="rss-sampler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()
        seconds = max(time.monotonic() - self._started, 1e-6)

        def usage(ticks: int, peak: int | None = None, hwm: int | None = None) -> Usage:
            cpu = ticks / CLOCK_TICKS
            return Usage(_mb(peak), _mb(hwm), round(100 * cpu / seconds, 1), round(cpu, 2))

        for name, pid in self._pids.items():
            memory = name in self._memory
            hwm = status_kib(pid, "VmHWM") or 0
            # A spike shorter than the sampling interval still raises the high-water mark:
            # if it rose during the phase, the phase's peak is at least the new mark.
            peak = max(self._peak_kib[name], hwm if hwm > self._hwm_kib[name] else 0)
            ticks = cpu_ticks(pid) - self._ticks[name]
            self.usage[name] = usage(ticks, peak, hwm) if memory else usage(ticks)
        # A backend that ended during the phase takes its ticks with it: a lower bound.
        self.usage["postgres"] = usage(cpu_spent(self._postgres, postgres_ticks(self._server)))
        busy, total = machine_ticks()
        busy_delta, total_delta = busy - self._machine[0], total - self._machine[1]
        self.machine_cpu_percent = round(100.0 * busy_delta / max(total_delta, 1), 1)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._sample()

    def _sample(self) -> None:
        for name in self._memory:
            rss = status_kib(self._pids[name], "VmRSS") or 0
            self._peak_kib[name] = max(self._peak_kib[name], rss)


def _mb(kib: int | None) -> float | None:
    """KiB (as /proc gives them) in MB, the unit of the RSS target."""
    return round(kib * 1024 / 1e6, 1) if kib else None


def service_pids() -> dict[str, int]:
    """The pids of the API, the scheduler and the broker as ``make up`` started them."""
    pids = {name: pid_of(name, pattern) for name, pattern in SERVICES.items()}
    for name, pattern in BROKER.items():
        # A broker that `make up` did not start (an outside one) is simply not sampled.
        with contextlib.suppress(BenchError):
            pids[name] = pid_of(name, pattern)
    return pids


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> tuple[float, ...]:
    """1, 5 and 15 minutes: how busy the shared machine was around the run."""
    return tuple(round(load, 2) for load in os.getloadavg())
