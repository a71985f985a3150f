"""Helpers of the system tests: scripts/docker.sh, the docker CLI, timings for the summary."""

from __future__ import annotations

import os
import re
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


def readme_command(prefix: str) -> str:
    """The README's shell command that starts with PREFIX, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(rf"^{re.escape(prefix)}.*$", text, re.MULTILINE)
    assert match, f"README.md has no command starting with {prefix!r}"
    return re.sub(r"\s+#.*$", "", match.group(0))
