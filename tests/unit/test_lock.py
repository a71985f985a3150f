"""The lock files: what is installed is what is locked, and the locks satisfy pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
# Installed beside the lock: the venv's own installer, and the project (editable, --no-deps).
NOT_LOCKED = {"pip", "fluxo-dados"}

PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of the pins whose markers hold on this interpreter."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            name = ""
            marker = match.group(3)
            if marker is None or Marker(marker).evaluate():
                name = canonicalize_name(match.group(1))
                pins[name] = (Version(match.group(2)), [])
        elif name and line.strip().startswith("--hash=sha256:"):
            pins[name][1].append(line.strip().removesuffix("\\").strip())
    assert pins, f"{path.name} pins nothing"
    return pins


def installed() -> dict[str, Version]:
    return {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }


def test_every_pin_carries_hashes() -> None:
    for path in (RUNTIME_LOCK, DEV_LOCK):
        for name, (_, hashes) in locked(path).items():
            assert hashes, f"{path.name}: {name} has no --hash"


def test_installed_distributions_equal_the_dev_lock() -> None:
    expected = {name: version for name, (version, _) in locked(DEV_LOCK).items()}
    actual = {name: v for name, v in installed().items() if name not in NOT_LOCKED}
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(
        f"{name} {actual[name]} (locked {expected[name]})"
        for name in set(expected) & set(actual)
        if actual[name] != expected[name]
    )
    assert not (missing or extra or differ), (
        f"run `make install`: missing {missing}, not locked {extra}, other versions {differ}"
    )


def test_the_runtime_lock_is_the_runtime_part_of_the_dev_lock() -> None:
    dev = locked(DEV_LOCK)
    for name, pin in locked(RUNTIME_LOCK).items():
        assert dev.get(name) == pin, f"{name}: requirements.lock and requirements-dev.lock differ"


def test_the_locks_satisfy_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for path, requirements in (
        (RUNTIME_LOCK, project["dependencies"]),
        (DEV_LOCK, project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        pins = locked(path)
        for text in requirements:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if name == canonicalize_name(project["name"]):
                continue  # an extra of the project itself: its requirements are listed too
            assert name in pins, f"{name} is not in {path.name}: run `make lock`"
            version = pins[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{path.name} pins {name} {version}, pyproject.toml wants {requirement}: "
                "run `make lock`"
            )
