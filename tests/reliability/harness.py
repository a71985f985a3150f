"""Real processes for the reliability suite: a broker and a database server of its own,
and the two services run as ``python -m services.<name>``, killed and restarted at will."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from dotenv import dotenv_values

from ..helpers import ROOT, eventually, free_ports

PYTHON = Path(sys.executable)
# The suite's own broker and PostgreSQL server: it stops and kills them, so they must never
# be the shared ones on 9092 and 5432 that other test runs use meanwhile.
RUN_DIR = ROOT / ".run" / "reliability"
KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
POSTGRES_PORT = 15432
SERVER_URL = f"postgresql://fluxo:fluxo@localhost:{POSTGRES_PORT}/fluxo"
# Every setting of the services, with its default: the suite sets them all itself, so that
# neither the caller's environment nor a developer's .env changes what a scenario runs.
SETTINGS: dict[str, str] = {
    key: value for key, value in dotenv_values(ROOT / ".env.example").items() if value is not None
}


def run_script(script: str, action: str, env: Mapping[str, str]) -> None:
    """``scripts/<script>.sh <action>``, failing with its output."""
    done = subprocess.run(
        [str(ROOT / "scripts" / f"{script}.sh"), action],
        cwd=ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"scripts/{script}.sh {action} failed ({done.returncode}):\n"
            f"{done.stdout}\n{done.stderr}"
        )


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def metric(text: str, name: str, **labels: str) -> float:
    """A sample of a Prometheus text exposition (labels in name order, as the services write)."""
    label_text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    wanted = f"{name}{{{label_text}}}" if labels else name
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == wanted:
            return float(value)
    return 0.0


@dataclass
class Infrastructure:
    """The suite's Kafka broker and PostgreSQL cluster, run by scripts/kafka.sh and postgres.sh."""

    run_dir: Path = RUN_DIR
    bootstrap: str = f"localhost:{KAFKA_PORT}"
    server_url: str = SERVER_URL
    # Set when a scenario stopped one of them; the next scenario starts it again first.
    disturbed: bool = False

    def run(self, script: str, action: str) -> None:
        run_script(
            script,
            action,
            {
                "FLUXO_RUN_DIR": str(self.run_dir),
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
                "DATABASE_URL": self.server_url,
            },
        )

    def start(self) -> None:
        self.run("postgres", "start")
        self.run("kafka", "start")
        self.disturbed = False

    def start_afresh(self) -> None:
        """Start of the session: a broker without the topics of earlier sessions (which
        would only slow its restarts down), and the database server."""
        self.run("kafka", "stop")  # one left running by an interrupted session
        shutil.rmtree(self.run_dir / "kafka-data", ignore_errors=True)
        log = self.run_dir / "kafka.log"
        if log.exists():
            log.replace(self.run_dir / "kafka.previous.log")  # one session's worth kept
        self.start()

    def stop(self) -> None:
        self.run("kafka", "stop")
        self.run("postgres", "stop")

    async def stop_kafka(self) -> None:
        self.disturbed = True
        await asyncio.to_thread(self.run, "kafka", "stop")

    async def start_kafka(self) -> None:
        await asyncio.to_thread(self.run, "kafka", "start")

    async def stop_postgres(self) -> None:
        self.disturbed = True
        await asyncio.to_thread(self.run, "postgres", "stop")

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.run, "postgres", "start")

    async def ensure_started(self) -> None:
        if self.disturbed:
            await asyncio.to_thread(self.start)


@dataclass
class Cluster:
    """A Kafka cluster of the suite's own, three KRaft nodes run by scripts/kafka.sh
    (``KAFKA_BROKERS=3``) on six consecutive free ports, with small heaps."""

    nodes: int = 3
    heap_mb: int = 288
    run_dir: Path = RUN_DIR / "cluster"
    port: int = field(default_factory=lambda: free_ports(6))  # node n: port + 2(n - 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"localhost:{self.port + 2 * n}" for n in range(self.nodes))

    def run(self, action: str) -> None:
        run_script(
            "kafka",
            action,
            {
                "FLUXO_RUN_DIR": str(self.run_dir),
                "KAFKA_BROKERS": str(self.nodes),
                "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{self.port}",
                "KAFKA_CONTROLLER_PORT": str(self.port + 1),
                "KAFKA_HEAP_MB": str(self.heap_mb),
            },
        )

    def start_afresh(self) -> None:
        self.run("stop")  # one left running by an interrupted session
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.run("start")

    async def start(self) -> None:
        """Start the nodes that are not running; wait until all answer."""
        await asyncio.to_thread(self.run, "start")

    def stop(self) -> None:
        self.run("stop")

    def pid(self, node: int) -> int:
        return int((self.run_dir / f"kafka-{node}.pid").read_text())

    def kill(self, node: int) -> None:
        """SIGKILL one node, like a crash; returns once the process is gone."""
        kill_and_wait(self.pid(node), f"kafka-{node}")

    def rss_mb(self) -> list[float]:
        """The resident memory of each node, MiB."""
        sizes = []
        for node in range(1, self.nodes + 1):
            status = Path(f"/proc/{self.pid(node)}/status").read_text()
            kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
            sizes.append(int(kib) / 1024)
        return sizes


def kill_and_wait(pid: int, what: str) -> None:
    """SIGKILL ``pid``, like a crash; returns once the process is gone."""
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return  # a zombie: gone, waiting for its parent
        time.sleep(0.05)
    raise AssertionError(f"{what} (pid {pid}) still running after SIGKILL")


@dataclass
class PatroniCluster:
    """A PostgreSQL cluster of the suite's own: three nodes under Patroni and a three-member
    etcd, run by scripts/postgres.sh (``POSTGRES_NODES=3``) on free ports, its data in a
    directory of its own (the postgres user must reach it when the suite runs as root)."""

    nodes: int = 3
    port: int = field(default_factory=lambda: free_ports(3))  # node n: port + n - 1
    rest_port: int = field(default_factory=lambda: free_ports(3))  # Patroni's REST API
    etcd_port: int = field(default_factory=lambda: free_ports(6))  # member n: + 2(n - 1), peer +1
    run_dir: Path = RUN_DIR / "patroni"

    @property
    def data_dir(self) -> Path:
        """Under /tmp, which the postgres user reaches whatever the checkout's permissions;
        one per run directory, so that a session interrupted leaves nothing the next one
        does not remove."""
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"fluxo-patroni-{digest}"

    @property
    def url(self) -> str:
        """The multi-host URL of the ``fluxo`` database, as ``make up`` gives the services."""
        hosts = ",".join(f"localhost:{self.port + n}" for n in range(self.nodes))
        return f"postgresql://fluxo:fluxo@{hosts}/fluxo?target_session_attrs=read-write"

    def env(self) -> dict[str, str]:
        return {
            "FLUXO_RUN_DIR": str(self.run_dir),
            "POSTGRES_NODES": str(self.nodes),
            "DATABASE_URL": f"postgresql://fluxo:fluxo@localhost:{self.port}/fluxo",
            "POSTGRES_PATRONI_PORT": str(self.rest_port),
            "POSTGRES_ETCD_PORT": str(self.etcd_port),
            "POSTGRES_CLUSTER_DIR": str(self.data_dir),
        }

    def run(self, action: str) -> None:
        run_script("postgres", action, self.env())

    def start_afresh(self) -> None:
        self.run("destroy")  # one left by an interrupted session
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.run("start")

    def destroy(self) -> None:
        """Stop every node and member and delete the data (the logs stay in run_dir)."""
        self.run("destroy")

    async def start(self) -> None:
        """Start the nodes and members that are not running; wait until all follow."""
        await asyncio.to_thread(self.run, "start")

    def rest(self, node: int, path: str) -> tuple[int, Any]:
        """A GET of node ``node``'s Patroni REST API: the status and the JSON (None when
        nothing answers)."""
        url = f"http://127.0.0.1:{self.rest_port + node - 1}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, None
        except OSError:
            return 0, None

    def leader(self) -> int | None:
        """The node that Patroni names leader, asking each node in turn."""
        for node in range(1, self.nodes + 1):
            status, body = self.rest(node, "/cluster")
            if status == 200:
                for member in body["members"]:
                    if member["role"] == "leader" and member["state"] == "running":
                        return int(member["name"].rpartition("-")[2])
        return None

    def patroni_pid(self, node: int) -> int:
        return int((self.run_dir / f"postgres-{node}.pid").read_text())

    def postmaster_pid(self, node: int) -> int:
        return int((self.data_dir / f"node-{node}" / "postmaster.pid").read_text().split()[0])

    def kill_node(self, node: int) -> None:
        """The machine of node ``node`` lost: its Patroni and its postgres killed together
        (-9); its etcd member stays up."""
        postmaster = self.postmaster_pid(node)
        kill_and_wait(self.patroni_pid(node), f"Patroni of node {node}")
        kill_and_wait(postmaster, f"postgres of node {node}")

    def switchover(self) -> subprocess.CompletedProcess[str]:
        """``patronictl switchover`` from the leader to any synchronous standby."""
        leader = self.leader()
        assert leader is not None, "no leader to switch over from"
        config = str(self.data_dir / "node-1.yml")
        return subprocess.run(
            ["patronictl", "-c", config, "switchover", "--leader", f"node-{leader}", "--force"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def etcd_leader(self) -> int:
        """The etcd member that leads the others (maintenance status of each member)."""
        ids: dict[str, int] = {}
        leader = ""
        for member in range(1, self.nodes + 1):
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.etcd_port + 2 * (member - 1)}/v3/maintenance/status",
                data=b"{}",
            )
            with urllib.request.urlopen(request, timeout=2) as answer:
                status = json.load(answer)
            ids[status["header"]["member_id"]] = member
            leader = status["leader"]
        return ids[leader]

    def kill_etcd(self, member: int) -> None:
        pid = int((self.run_dir / f"etcd-{member}.pid").read_text())
        kill_and_wait(pid, f"etcd member {member}")


@dataclass
class ServiceProcess:
    """One service as a real process, logging to a file of its own per start."""

    name: str  # "api" or "scheduler"
    port: int
    env: Mapping[str, str]
    log_dir: Path
    http: aiohttp.ClientSession
    logs: list[Path] = field(default_factory=list)
    label: str = ""  # names its log files when several instances run: "api-2"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.logs[-1]

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} was never started"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        path = self.log_dir / f"{self.label or self.name}-{len(self.logs) + 1}.log"
        self.logs.append(path)
        with path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(PYTHON), "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest does not reach it
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a crash or the OOM killer."""
        process = self._process
        assert process is not None and self.running, f"{self.name} is not running"
        process.kill()
        process.wait(timeout=10)

    async def terminate(self, within: float = 40) -> int:
        """SIGTERM and wait for the process to exit; returns its exit code."""
        process = self._process
        assert process is not None and self.running, f"{self.name} is not running"
        process.send_signal(signal.SIGTERM)

        async def exited() -> bool:
            return process.poll() is not None

        await eventually(
            exited,
            within=within,
            what=f"{self.name} exiting after SIGTERM",
            every=0.1,
            context=self.log_tail,
        )
        return process.wait()

    def discard(self) -> None:
        """End of the scenario: kill whatever still runs."""
        if self._process is not None and self.running:
            self._process.kill()
        if self._process is not None:
            self._process.wait(timeout=10)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()

    async def probe(self, path: str) -> int | None:
        """The status of a GET, or None when nothing answers."""
        try:
            async with asyncio.timeout(5):
                return (await self.get(path))[0]
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def ready(self, within: float = 60) -> None:
        async def answers_200() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited during start-up:\n{tail(self.log)}")
            return await self.probe("/ready") == 200

        await eventually(
            answers_200,
            within=within,
            what=f"{self.name} answering /ready",
            every=0.1,
            context=self.log_tail,
        )

    async def metric(self, name: str, **labels: str) -> float:
        status, text = await self.get("/metrics")
        assert status == 200, text
        return metric(text, f"fluxo_{self.name}_{name}", **labels)

    def log_tail(self) -> str:
        return f"--- {self.log}:\n{tail(self.log)}"

    def log_text(self) -> str:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in self.logs)
