"""The Makefile documents itself: `make help` lists every target."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_target() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z.][a-z.-]*):(?!=)", text, re.MULTILINE))
    assert {"help", "install", "lock", "up", "test", "test-fast", "read-topic"} <= targets
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    listed = set(re.findall(r"^  make (\S+)", shown, re.MULTILINE))
    assert listed == targets, f"not listed: {sorted(targets - listed)}"
