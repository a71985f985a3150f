#!/usr/bin/env python3
"""Local mirrors for containers that cannot reach PyPI or Maven Central over HTTPS.

  mirror.py build DIR PYTHON...   fill DIR with a PEP 503 simple index (DIR/simple/) of the
                                  distributions the project installs, downloaded by each
                                  PYTHON's pip, and a Maven repository layout (DIR/maven2/) of
                                  the Kafka jars of scripts/kafka/jars.txt

What the project installs is read from its own files, the way the Dockerfile and `make install`
read them: each requirements*.lock / requirements*.txt at the top of the checkout when there is
one, otherwise pyproject.toml's dependencies and extras; plus pyproject.toml's build-system
requirements and wheel (pip builds the project, and any source distribution, in isolation).
Downloads are cached in DIR/files and keyed on those files' contents, so a second build asks
nobody anything. Containers then use the index through pip's ordinary settings
(PIP_INDEX_URL=http://HOST:PORT/simple/, PIP_TRUSTED_HOST=HOST) and the jars through
MAVEN_REPOSITORY_URL=http://HOST:PORT/maven2. Standard library only.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JARS = ROOT / "scripts" / "kafka" / "jars.txt"
DIST_NAME = re.compile(r"^(.+?)-\d[^-]*(?:-[^-]+)*\.(?:whl|tar\.gz|zip)$")


def requirement_files() -> list[Path]:
    return sorted(
        path
        for pattern in ("requirements*.lock", "requirements*.txt")
        for path in ROOT.glob(pattern)
    )


def pyproject_requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    build: list[str] = data.get("build-system", {}).get("requires", [])
    extra = [*build, "wheel"]
    if requirement_files():
        return extra
    project = data.get("project", {})
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    optional = [r for group in extras.values() for r in group]
    return [*project.get("dependencies", []), *optional, *extra]


def download(files: Path, stamps: Path, python: str) -> None:
    """Every distribution the project installs, for the interpreter PYTHON, into FILES."""
    sources = [*(p.read_text(encoding="utf-8") for p in requirement_files())]
    sources += pyproject_requirements()
    version = subprocess.run(
        [python, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    digest = hashlib.sha256("\0".join(sources).encode()).hexdigest()[:16]
    stamp = stamps / f"{version}-{digest}"
    if stamp.exists():
        return
    print(f"mirror: downloading the project's distributions for Python {version}", flush=True)
    pip = [python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(files)]
    for path in requirement_files():
        subprocess.run([*pip, "-r", str(path)], check=True)
    subprocess.run([*pip, *pyproject_requirements()], check=True)
    stamps.mkdir(parents=True, exist_ok=True)
    stamp.touch()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_index(files: Path, simple: Path) -> int:
    """A PEP 503 simple index of FILES: simple/<project>/index.html, links with sha256."""
    projects: dict[str, list[Path]] = {}
    for path in sorted(files.iterdir()):
        match = DIST_NAME.match(path.name)
        if match:
            projects.setdefault(normalize(match.group(1)), []).append(path)
    shutil.rmtree(simple, ignore_errors=True)
    simple.mkdir(parents=True)
    for project, dists in projects.items():
        links = "".join(
            f'<a href="../../files/{html.escape(d.name)}#sha256='
            f'{hashlib.sha256(d.read_bytes()).hexdigest()}">{html.escape(d.name)}</a><br>\n'
            for d in dists
        )
        (simple / project).mkdir()
        (simple / project / "index.html").write_text(
            f"<!DOCTYPE html><html><body>\n{links}</body></html>\n", encoding="utf-8"
        )
    index = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in projects)
    (simple / "index.html").write_text(
        f"<!DOCTYPE html><html><body>\n{index}</body></html>\n", encoding="utf-8"
    )
    return len(projects)


def write_maven(maven: Path) -> int:
    """The jars of jars.txt in a Maven repository layout, fetched (and checked) by jars.py."""
    sys.path.insert(0, str(JARS.parent))
    import jars  # scripts/kafka/jars.py

    entries = jars.parse(JARS.read_text(encoding="utf-8"))
    # (group, artifact, version, sha256, file name): the file name holds any classifier.
    paths = [jars.repository_path(g, a, v, name) for g, a, v, _, name in entries]
    if any(not (maven / path).is_file() for path in paths):
        flat = maven.parent / "jars.partial"
        shutil.rmtree(flat, ignore_errors=True)
        jars.fetch(flat)
        for path in paths:
            target = maven / path
            target.parent.mkdir(parents=True, exist_ok=True)
            (flat / target.name).replace(target)
        shutil.rmtree(flat)
    return len(entries)


def build(out: Path, pythons: list[str]) -> None:
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    for python in pythons:
        download(files, out / "stamps", python)
    projects = write_index(files, out / "simple")
    jar_count = write_maven(out / "maven2")
    print(f"mirror: {projects} projects in {out}/simple, {jar_count} jars in {out}/maven2")


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "build":
        build(Path(argv[1]), argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
