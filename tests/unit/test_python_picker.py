"""scripts/python.sh: which interpreter `make install` (and so `make up`) builds .venv with."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..helpers import ROOT

SCRIPT = ROOT / "scripts" / "python.sh"
THIS = f"{sys.version_info[0]}.{sys.version_info[1]}"


def fake_python(directory: Path, name: str, version: str) -> None:
    """An interpreter that reports ``version`` (and cannot do anything else)."""
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)


def picker(bin_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the script with only ``bin_dir`` (plus the tools it uses) on PATH, no pyenv."""
    for tool in ("sort", "tail", "bash"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_an_unsupported_python3_is_passed_over_for_a_supported_python3_x(tmp_path: Path) -> None:
    fake_python(tmp_path, "python3", "3.10")
    (tmp_path / f"python{THIS}").symlink_to(sys.executable)

    result = picker(tmp_path)

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == Path(sys.executable).resolve()


def test_no_supported_python_stops_with_a_clear_message(tmp_path: Path) -> None:
    fake_python(tmp_path, "python3", "3.10")

    result = picker(tmp_path)

    assert result.returncode == 1
    assert "No supported Python found" in result.stderr
    assert "PYTHON=" in result.stderr


def test_a_version_can_be_asked_for(tmp_path: Path) -> None:
    (tmp_path / f"python{THIS}").symlink_to(sys.executable)

    result = picker(tmp_path, THIS)

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == Path(sys.executable).resolve()


def test_an_unsupported_version_is_refused_by_name(tmp_path: Path) -> None:
    result = picker(tmp_path, "3.10")

    assert result.returncode == 1
    assert "Python 3.10 is not supported" in result.stderr
