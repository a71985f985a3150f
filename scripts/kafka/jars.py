#!/usr/bin/env python3
"""The Kafka broker's runtime jars, from a committed list with SHA-256 sums (no Maven needed).

  jars.py fetch DEST [LIST]
                         download every artifact of LIST (jars.txt by default) into DEST
                         and check its SHA-256
  jars.py lock           rewrite jars.txt from Maven's resolution of pom.xml (maintainers;
                         needs mvn; run it after changing a version in pom.xml)

fetch reads each jar from the local Maven repository (~/.m2/repository) when it is there,
otherwise from MAVEN_REPOSITORY_URL (default: Maven Central). Every byte is checked against
jars.txt before it lands in DEST, whatever its source. Standard library only: it runs on a
bare machine's python3 before any venv exists.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE / "jars.txt"
POM = HERE / "pom.xml"
CENTRAL = "https://repo.maven.apache.org/maven2"
LOCAL_REPOSITORY = Path.home() / ".m2" / "repository"
HEADER = """\
# The Kafka broker's runtime classpath (scripts/kafka/pom.xml, resolved by Maven), with the
# SHA-256 of each jar. Written by `scripts/kafka/jars.py lock`; read by `jars.py fetch`.
# group:artifact:version sha256
"""


def parse(text: str, source: Path = LIST) -> list[tuple[str, str, str, str, str]]:
    """(group, artifact, version, sha256, file name) for each non-comment line.

    A line names a jar (``group:artifact:version sha256``) or another artifact with its
    classifier and type (``group:artifact:version:classifier:type sha256``, such as a
    connector's ``plugin`` ``tar.gz``).
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(
            r"([\w.-]+):([\w.-]+):([\w.+-]+)(?::([\w.-]+):([\w.]+))?\s+([0-9a-f]{64})", line
        )
        if not match:
            raise SystemExit(f"{source}:{number}: expected 'group:artifact:version sha256'")
        group, artifact, version, classifier, kind, sha256 = match.groups()
        suffix = f"-{classifier}.{kind}" if classifier else ".jar"
        entries.append((group, artifact, version, sha256, f"{artifact}-{version}{suffix}"))
    return entries


def repository_path(group: str, artifact: str, version: str, name: str = "") -> str:
    name = name or f"{artifact}-{version}.jar"
    return f"{group.replace('.', '/')}/{artifact}/{version}/{name}"


def read_jar(path: str) -> bytes:
    local = LOCAL_REPOSITORY / path
    if local.is_file():
        return local.read_bytes()
    base = os.environ.get("MAVEN_REPOSITORY_URL", CENTRAL).rstrip("/")
    with urllib.request.urlopen(f"{base}/{path}", timeout=60) as response:
        data: bytes = response.read()
    return data


def fetch(dest: Path, listing: Path = LIST) -> None:
    entries = parse(listing.read_text(encoding="utf-8"), listing)
    dest.mkdir(parents=True, exist_ok=True)
    for group, artifact, version, sha256, name in entries:
        path = repository_path(group, artifact, version, name)
        target = dest / name
        try:
            data = read_jar(path)
        except OSError as exc:
            raise SystemExit(f"kafka: cannot fetch {path}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise SystemExit(f"kafka: {path} has SHA-256 {actual}, {listing.name} says {sha256}")
        target.write_bytes(data)
    print(f"kafka: {len(entries)} artifacts checked against {listing.name}")


def lock() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        subprocess.run(
            ["mvn", "-B", "-q", "-f", str(POM), "dependency:list",
             "-DincludeScope=runtime", f"-DoutputFile={listing}"],
            check=True,
        )  # fmt: skip
        coordinates = sorted(
            match.groups()
            for match in re.finditer(
                r"^\s*([\w.-]+):([\w.-]+):jar:([\w.+-]+):(?:compile|runtime)",
                listing.read_text(encoding="utf-8"),
                re.MULTILINE,
            )
        )
    lines = []
    for group, artifact, version in coordinates:
        jar = LOCAL_REPOSITORY / repository_path(group, artifact, version)
        lines.append(f"{group}:{artifact}:{version} {hashlib.sha256(jar.read_bytes()).hexdigest()}")
    LIST.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{LIST}: {len(lines)} jars")


def main(argv: list[str]) -> None:
    if argv[:1] == ["fetch"] and len(argv) in (2, 3):
        fetch(Path(argv[1]), *(Path(arg) for arg in argv[2:]))
    elif argv == ["lock"]:
        lock()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
