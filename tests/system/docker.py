"""Helpers of the system tests: scripts/docker.sh, the docker CLI, timings for the summary."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER_SH = ROOT / "scripts" / "docker.sh"
MIRROR_PORT = os.environ.get("MIRROR_PORT", "3141")
TIMINGS: list[str] = []  # printed at the end of the run (conftest.pytest_terminal_summary)
PROJECT = "fluxo-dados"  # the compose project's name
# Present while a test owns the compose project: only then may it remove an existing one.
OWNER = ROOT / ".run" / "compose-test.owner"


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


def project_objects() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = []
    for kind in ("container", "network", "volume"):
        ls = ["ps", "-a"] if kind == "container" else [kind, "ls"]
        names = run("docker", *ls, "-q", "--filter", label).stdout.split()
        found += [f"{kind} {name}" for name in names]
    return found


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def claim_project() -> None:
    """Take the fluxo-dados compose project for a test, or fail if a user's exists."""
    existing = project_objects()
    if existing and not OWNER.exists():
        pytest.fail(
            f"a compose project named {PROJECT} exists that this test did not create "
            f"({', '.join(existing)}); the test never removes a user's stack: "
            "remove it (docker compose down -v drops its data too) and run the test again"
        )
    if existing:  # left by an interrupted run of a test
        remove_project()


def remove_project() -> None:
    """docker compose down -v: the project's containers, network and volumes."""
    # A throw-away login for compose's interpolation, should .env have none yet.
    login = {"KAFKA_UI_USERNAME": "unused", "KAFKA_UI_PASSWORD": "unused"}
    run("docker", "compose", "down", "-v", env=login, timeout=300, input="")
