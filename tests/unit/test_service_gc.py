"""A service tunes the garbage collector before it serves (services/common/service.py)."""

from __future__ import annotations

import subprocess
import sys

from ..helpers import ROOT

CHECK = """
import gc
from services.common.service import GC_THRESHOLD, tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector()
print(gc.get_threshold() == (GC_THRESHOLD, *before[1:]), gc.get_freeze_count() > 10_000)
"""


def test_the_collector_runs_rarely_and_skips_what_start_up_made() -> None:
    # In a process of its own: the test run's collector stays as it is.
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
