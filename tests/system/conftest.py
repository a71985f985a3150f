"""System tests: run by `make test-system` (which sets FLUXO_SYSTEM_TESTS=1), never by
`make test`: they need a Docker engine and take minutes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .docker import TIMINGS, mirror_url, script

if not os.environ.get("FLUXO_SYSTEM_TESTS"):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def mirror() -> Iterator[dict[str, str]]:
    """The local PyPI index and Maven repository, as pip's and jars.py's ordinary settings."""
    script("mirror-start")
    base = mirror_url()
    yield {
        "PIP_INDEX_URL": f"{base}/simple/",
        "PIP_TRUSTED_HOST": base.split("//")[1].split(":")[0],
        "MAVEN_REPOSITORY_URL": f"{base}/maven2",
    }
    script("mirror-stop")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("system test timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
