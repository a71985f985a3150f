"""py-spy attached to the running services for one phase: top functions and flame graphs.

py-spy is not a dependency of the project: ``.venv/bin/pip install py-spy`` to profile.
It records collapsed stacks (``--format raw``), which give the top functions; the flame
graph is drawn from the same samples, so one sampler per service is enough. Only samples
holding the GIL are kept (``--gil``): a thread waiting (the event loop in epoll, an idle
executor thread) is not where the CPU goes.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import zlib
from collections import Counter
from collections.abc import Iterable
from html import escape
from pathlib import Path

from .procs import BenchError
from .report import Profile

RATE = 100  # samples per second: py-spy's default, light on a 2-core machine
# Frames whose file lies here are the project's code (py-spy shows paths from the package).
PROJECT = ("services/",)
# Samples with no project frame at all: the event loop and the drivers' own callbacks.
OUTSIDE = "(no project frame: event loop, drivers)"


def parse_collapsed(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """``frame;frame;frame count`` lines (root first) → samples per stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summarize(stacks: Counter[tuple[str, ...]], top: int = 12) -> Profile:
    """Self time per function (the leaf of each sample), and time per project function:
    each sample goes to its deepest frame in the project's code, so a handler's share
    includes the libraries it calls (marshmallow, asyncpg, aiokafka) but not the project
    functions it calls, which have their own line."""
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    project: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        mine = [frame for frame in stack if any(part in frame for part in PROJECT)]
        project[mine[-1] if mine else OUTSIDE] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return Profile(samples=total, self_time=share(own), project=share(project))


def flame_svg(stacks: Counter[tuple[str, ...]], title: str, width: int = 1200) -> str:
    """A static flame graph (root at the bottom, width = samples; hover shows the figures)."""
    counts: Counter[tuple[str, ...]] = Counter()  # samples per path prefix
    for stack, count in stacks.items():
        for depth in range(1, len(stack) + 1):
            counts[stack[:depth]] += count
    total = sum(stacks.values()) or 1
    depth_max = max((len(stack) for stack in stacks), default=0)
    row, top = 16, 40
    height = top + row * (depth_max + 1)
    scale = (width - 20) / total
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in sorted(counts):
        children.setdefault(path[:-1], []).append(path)
    boxes: list[str] = []

    def draw(path: tuple[str, ...], x: float) -> None:
        for child in children.get(path, []):
            w = counts[child] * scale
            if w >= 0.5:  # narrower than a pixel: invisible anyway
                y = height - row * len(child) - 4
                name = child[-1]
                pct = 100 * counts[child] / total
                hue = zlib.crc32(name.encode()) % 60  # warm colours, stable per function
                label = escape(name[: int(w / 7)]) if w > 21 else ""
                boxes.append(
                    f"<g><title>{escape(name)} ({counts[child]} samples, {pct:.1f}%)</title>"
                    f'<rect x="{10 + x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},85%,60%)" rx="2"/>'
                    f'<text x="{13 + x:.1f}" y="{y + 11}">{label}</text></g>'
                )
                draw(child, x)
            x += w

    draw((), 0.0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>'
        f'<text x="10" y="24" font-size="15">{escape(title)} ({total} samples)</text>'
        + "".join(boxes)
        + "</svg>\n"
    )


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class Profiler:
    """One ``py-spy record`` per service, from ``start()`` until ``stop()``."""

    def __init__(self, pids: dict[str, int], out_dir: Path, stem: str) -> None:
        self._pids = pids
        self._out_dir = out_dir
        self._stem = stem
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    def _raw(self, service: str) -> Path:
        # The *.profile.* names are gitignored: profiles are evidence, not sources.
        return self._out_dir / f"{self._stem}-{service}.profile.txt"

    async def start(self) -> None:
        binary = py_spy()
        for service, pid in self._pids.items():
            self._processes[service] = await asyncio.create_subprocess_exec(
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--function",
                "--gil",
                "--format",
                "raw",
                "--output",
                str(self._raw(service)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        await asyncio.sleep(0.5)  # attached before the load starts

    async def stop(self) -> dict[str, Profile]:
        """Stop sampling (py-spy writes its file on SIGINT); write the flame graphs."""
        profiles: dict[str, Profile] = {}
        for service, process in self._processes.items():
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            await process.wait()
            raw = self._raw(service)
            if not raw.exists():
                continue
            stacks = parse_collapsed(raw.read_text().splitlines())
            svg = raw.with_suffix(".svg")
            svg.write_text(flame_svg(stacks, f"{service} at full speed ({self._stem})"))
            profiles[service] = summarize(stacks)
        self._processes.clear()
        return profiles
