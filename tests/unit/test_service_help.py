"""``python -m services.api --help`` and ``services.scheduler --help`` list the settings."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from services.common.service import settings_help
from services.scheduler.config import SchedulerConfig

from ..helpers import ROOT


def help_of(module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("module", ["services.api", "services.scheduler"])
def test_help_prints_the_settings_and_exits(module: str) -> None:
    text = help_of(module)

    assert f"usage: python -m {module}" in text
    assert re.search(r"^  API_TOKEN +\S", text, re.MULTILINE)
    assert re.search(r"^  KAFKA_BOOTSTRAP_SERVERS +localhost:9092$", text, re.MULTILINE)


def test_a_setting_without_a_default_is_shown_as_required() -> None:
    assert re.search(r"^  DATABASE_URL +\(required\)$", help_of("services.api"), re.MULTILINE)


def test_the_two_helps_cover_every_setting_of_env_example() -> None:
    listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", help_of("services.api"), re.MULTILINE))
    listed |= set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", help_of("services.scheduler"), re.MULTILINE))
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))

    assert listed == documented


def test_settings_help_shows_each_default() -> None:
    text = settings_help(SchedulerConfig.from_env)

    assert re.search(r"^  SCHEDULER_PORT +8010$", text, re.MULTILINE)
    assert re.search(r"^  SCHEDULER_BATCH_SIZE +500$", text, re.MULTILINE)
