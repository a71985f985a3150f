"""scripts/kafka/jars.py: the Kafka jars come from a committed list and are checked byte by byte."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_jars() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jars", ROOT / "scripts" / "kafka" / "jars.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


jars = load_jars()


def repository(tmp_path: Path, content: bytes) -> str:
    """A Maven repository (file:// URL) holding one jar, local.test:thing:1.0."""
    jar = tmp_path / "repo" / "local" / "test" / "thing" / "1.0" / "thing-1.0.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(content)
    return (tmp_path / "repo").as_uri()


def listing(tmp_path: Path, sha256: str) -> Path:
    path = tmp_path / "jars.txt"
    path.write_text(f"# comment\nlocal.test:thing:1.0 {sha256}\n", encoding="utf-8")
    return path


def test_fetch_writes_a_jar_whose_sha256_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAVEN_REPOSITORY_URL", repository(tmp_path, b"jar bytes"))
    jars.fetch(tmp_path / "libs", listing(tmp_path, hashlib.sha256(b"jar bytes").hexdigest()))
    assert (tmp_path / "libs" / "thing-1.0.jar").read_bytes() == b"jar bytes"


def test_fetch_refuses_a_jar_whose_sha256_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAVEN_REPOSITORY_URL", repository(tmp_path, b"tampered"))
    expected = hashlib.sha256(b"jar bytes").hexdigest()
    with pytest.raises(SystemExit, match=f"says {expected}"):
        jars.fetch(tmp_path / "libs", listing(tmp_path, expected))
    assert not (tmp_path / "libs" / "thing-1.0.jar").exists()


def test_a_malformed_line_is_named() -> None:
    with pytest.raises(SystemExit, match=r"jars.txt:2: expected"):
        jars.parse("# header\norg.example:thing 1234\n")


def test_the_committed_list_holds_the_broker_of_the_local_runner() -> None:
    entries = jars.parse((ROOT / "scripts" / "kafka" / "jars.txt").read_text(encoding="utf-8"))
    runner = (ROOT / "scripts" / "kafka.sh").read_text(encoding="utf-8")
    version = re.search(r'KAFKA_VERSION="\$\{KAFKA_VERSION:-([^}"]+)\}"', runner)
    assert version
    assert ("org.apache.kafka", "kafka_2.13", version.group(1)) in [e[:3] for e in entries]
    assert ("org.apache.kafka", "kafka-tools", version.group(1)) in [e[:3] for e in entries]
