"""`make up` on a machine that has just been installed: bare Debian 12 and 13 containers.

Each container starts from fluxo-dados-debian:SUITE (debootstrap minbase plus make, git,
python3, ca-certificates and sudo; scripts/docker.sh base), which no run changes: the test
works in a container of it and removes that container. The checkout is copied in. apt reaches
Debian's packages; pip and the Kafka jars come from the host's mirror (scripts/docker/mirror.py)
through pip's PIP_INDEX_URL / PIP_TRUSTED_HOST and the jar list's MAVEN_REPOSITORY_URL.
curl is not on a bare machine: the test installs it with apt-get first, as a user would, since
the README's commands use it. Then it runs the README's commands, in order and as written
(tests/doc_blocks.py), in a shell with no variables but the mirrors'.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.doc_blocks import command, following, run_blocks

from .docker import ROOT, TIMINGS, run, script

WORKDIR = "/root/fluxo-dados"
# Processes left after `make down`: every process but the container's init, its `sleep`,
# and the checker itself.
LEFT_OVER = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) in (1, os.getpid()):
        continue
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip()
    except OSError:
        continue
    if cmd and cmd != "sleep infinity":
        print(pid, cmd)
"""


def pins_a_python_311_only_apispec() -> bool:
    """aiohttp-apispec 2.2.3 imports distutils, which Python 3.13 (Debian 13) removed."""
    return "aiohttp-apispec==2.2.3" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


SUITES = [
    pytest.param("bookworm", id="debian-12"),
    pytest.param(
        "trixie",
        id="debian-13",
        marks=pytest.mark.xfail(
            pins_a_python_311_only_apispec(),
            reason="aiohttp-apispec 2.2.3 does not import on Python 3.13",
            strict=True,
        ),
    ),
]


def checkout_tar() -> bytes:
    """The checkout as git sees it (tracked and untracked files, nothing ignored)."""
    names = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(set(names.split("\0")) - {""}):
            if (ROOT / name).exists():
                tar.add(ROOT / name, arcname=name, recursive=False)
    return buffer.getvalue()


class Machine:
    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, command: str, timeout: float = 120, check: bool = True) -> str:
        return run("docker", "exec", "-w", WORKDIR, self.name, "bash", "-c", command,
                   timeout=timeout, check=check).stdout  # fmt: skip

    def block(self, text: str, follows_a_log: bool) -> tuple[int, str, str]:
        """One of the docs' blocks, in the container's shell (its variables: the mirrors')."""
        shell = following(text) if follows_a_log else text
        result = run("docker", "exec", "-w", WORKDIR, self.name, "bash", "-c", shell,
                     timeout=540, check=False)  # fmt: skip
        return result.returncode, result.stdout, result.stderr


@contextmanager
def bare_machine(suite: str, settings: dict[str, str]) -> Iterator[Machine]:
    """A container of the cached bare image of SUITE holding the checkout; removed after."""
    image = f"fluxo-dados-debian:{suite}"
    TIMINGS.extend(f"fresh: {line}" for line in script("base", suite).splitlines())
    image_id = run("docker", "image", "inspect", image, "--format", "{{.Id}}").stdout
    name = f"fluxo-dados-fresh-{suite}-{uuid.uuid4().hex[:8]}"
    env = [arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")]
    run("docker", "run", "-d", "--init", "--name", name, *env, image, "sleep", "infinity")
    try:
        run("docker", "exec", name, "mkdir", "-p", WORKDIR)
        subprocess.run(["docker", "cp", "-", f"{name}:{WORKDIR}"], input=checkout_tar(),
                       check=True, timeout=120)  # fmt: skip
        yield Machine(name)
    finally:
        run("docker", "rm", "-f", name)
        after = run("docker", "image", "inspect", image, "--format", "{{.Id}}").stdout
        assert after == image_id, f"the run changed the cached image {image}"


@pytest.fixture(params=SUITES)
def machine(request: pytest.FixtureRequest, mirror: dict[str, str]) -> Iterator[Machine]:
    with bare_machine(request.param, mirror) as bare:
        yield bare


def test_without_apt_make_up_names_every_missing_program_in_one_line() -> None:
    with bare_machine("bookworm", {}) as bare:
        bare.sh("rm /usr/bin/apt-get")
        out = bare.sh("make up 2>&1; echo exit=$?", check=False)
    assert not out.endswith("exit=0\n"), out
    lines = [line for line in out.splitlines() if "missing" in line]
    assert len(lines) == 1, out
    for program in ("java (Java >= 17)", "pg_ctlcluster and psql", "python3 venv module"):
        assert program in lines[0]


@pytest.mark.timeout(900)
def test_the_readmes_commands_on_a_bare_debian(machine: Machine) -> None:
    absent = machine.sh("for p in java mvn psql; do command -v $p || true; done")
    assert absent == "", f"a bare machine has these already: {absent}"
    machine.sh(
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl",
        timeout=300,
    )

    start = time.monotonic()
    done = run_blocks(ROOT / "README.md", machine.block)
    took = time.monotonic() - start
    os_name = machine.sh(". /etc/os-release && echo $PRETTY_NAME").strip()
    TIMINGS.append(f"fresh {os_name}: the README's {len(done)} commands took {took:.0f} s")
    TIMINGS.extend(f"fresh {os_name}:   {line}" for line in done)
    assert done[-1].endswith("make down"), done

    left = machine.sh(f"python3 -c '{LEFT_OVER}'")
    assert left == "", f"make down left these running:\n{left}"


@pytest.mark.timeout(1200)
def test_a_postgresql_cluster_under_make_up_on_a_bare_debian(machine: Machine) -> None:
    """`make up POSTGRES_NODES=3`: three nodes under Patroni and etcd from Debian's packages;
    the README's record reaches the primary, and `make psql` (not told again) finds it."""
    machine.sh(
        "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl",
        timeout=300,
    )
    start = time.monotonic()
    machine.sh("make up POSTGRES_NODES=3", timeout=900)
    took = time.monotonic() - start
    status = machine.sh("scripts/postgres.sh status")
    for name in ("postgres-1", "postgres-2", "postgres-3", "etcd-1", "etcd-2", "etcd-3"):
        assert f"{name}: running" in status, status
    assert "Sync Standby" in status, status

    answer = machine.sh(command("curl -i -X POST http://localhost:8000/produto/manual"))
    assert answer.startswith("HTTP/1.1 202"), answer
    query = command("make psql <<<")
    deadline = time.monotonic() + 30
    while "12369" not in (rows := machine.sh(query)) and time.monotonic() < deadline:
        time.sleep(1)
    assert "12369" in rows, f"the record is not in products after 30 s:\n{rows}"
    primary = machine.sh("make psql <<< 'SELECT pg_is_in_recovery()'")
    assert "f" in (line.strip() for line in primary.splitlines()), f"not the primary:\n{primary}"

    os_name = machine.sh(". /etc/os-release && echo $PRETTY_NAME").strip()
    TIMINGS.append(f"fresh {os_name}: make up POSTGRES_NODES=3 took {took:.0f} s")
    machine.sh("make down", timeout=300)
    left = machine.sh(f"python3 -c '{LEFT_OVER}'")
    assert left == "", f"make down left these running:\n{left}"
