"""The benchmark's CPU accounting, and how ``--scaling`` fails without a broker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import procs
from bench.procs import cpu_spent


def test_cpu_is_counted_process_by_process() -> None:
    before = {10: 500, 11: 40, 12: 7}
    after = {10: 530, 12: 9, 13: 5}  # 11 ended during the phase, 13 started

    # 11's ticks go with it (a lower bound) rather than taking its 40 off the sum.
    assert cpu_spent(before, after) == 30 + 2 + 5


def test_nothing_spent_between_equal_readings() -> None:
    assert cpu_spent({1: 3, 2: 4}, {1: 3, 2: 4}) == 0
    assert cpu_spent({}, {}) == 0


def test_scaling_without_a_broker_pid_ends_with_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs, "RUN_DIR", tmp_path)  # no .run/kafka.pid
    monkeypatch.setattr(sys, "argv", ["bench", "--scaling"])

    with pytest.raises(SystemExit) as exited:
        bench_main.main()

    assert str(exited.value.code).startswith("bench: kafka is not running")
