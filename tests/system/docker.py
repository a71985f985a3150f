"""Helpers of the system tests: scripts/docker.sh, the docker CLI, timings for the summary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER_SH = ROOT / "scripts" / "docker.sh"
MIRROR_PORT = os.environ.get("MIRROR_PORT", "3141")
TIMINGS: list[str] = []  # printed at the end of the run (conftest.pytest_terminal_summary)


def run(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command from the checkout; on failure, the message holds its output."""
    result = subprocess.run(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"--- stdout (end)\n{result.stdout[-6000:]}\n--- stderr (end)\n{result.stderr[-6000:]}"
        )
    return result


def script(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    return run(str(DOCKER_SH), *args, env=env, timeout=timeout).stdout


def mirror_url() -> str:
    return f"http://{script('bridge').strip()}:{MIRROR_PORT}"
