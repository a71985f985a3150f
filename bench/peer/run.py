"""``python -m bench --peer`` (``make bench-peer``): fluxo-dados against Kafka Connect +
Debezium on a broker and a PostgreSQL server of the benchmark's own.

Nothing of ``make up`` is used or touched: the broker (scripts/kafka.sh) and the database
server (scripts/postgres.sh, ``wal_level=logical``) run from ``.run/bench-peer/`` on ports
of their own, started fresh and stopped at the end. Each run of a system gets a database
and topics of its own, and its own processes (Connect; or one API and one scheduler, as
``make up`` starts them), stopped after it; the peer's replication slot is dropped.

A run: the system is started with its input paused (the sink connector paused once its
tasks run; the scheduler's consumer paused), the workload is produced (not timed), the
input resumed, and the drain lasts until every id's last record has its event on the
output topic. Then every row is compared with its id's last record, and with ``--rates``,
fresh ids are produced at a fixed rate for the latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from dotenv import dotenv_values

from services.common import jsoncodec
from services.common.config import KafkaConfig
from services.common.kafka import create_producer, ensure_topics

from ..database import database_url, scratch_database
from ..pipeline import (
    STALL_SECONDS,
    TopicFollower,
    operate,
    produce_full_speed,
    produce_paced,
)
from ..procs import BenchError, Sampler, load_average
from ..report import Latency, latency
from ..scaling import Service
from ..settings import OUTPUT_DIR, RESULTS_DIR, ROOT, Settings
from . import config
from .figures import FLUXO, PEER, Completion, Run, mismatched_rows, render

log = logging.getLogger("bench.peer")

HERE = Path(__file__).resolve().parent
JARS = HERE / "jars.txt"
RUN_DIR = ROOT / ".run" / "bench-peer"
# Fixed, uncommon ports (a port chosen at random would create a PostgreSQL cluster per
# run): never those of `make up` (9092, 5432, 8000, 8010) nor of the reliability suite
# (19092, 15432). Checked free before anything starts.
KAFKA_PORT = 27192
KAFKA_CONTROLLER_PORT = 27193
POSTGRES_PORT = 27154
CONNECT_PORT = 27183
API_PORT = 27100
SCHEDULER_PORT = 27110
PORTS = (KAFKA_PORT, KAFKA_CONTROLLER_PORT, POSTGRES_PORT, CONNECT_PORT, API_PORT, SCHEDULER_PORT)
SERVER_URL = f"postgresql://fluxo:fluxo@localhost:{POSTGRES_PORT}/fluxo"
KAFKA_HEAP_MB = 512
CONNECT_VERSION = "4.1.1"
# Jars the plugin archives bundle that the worker itself provides (its own are loaded).
WORKER_JARS = ("kafka-clients-", "connect-api-")
# The JVM options of Kafka's own start scripts (kafka-run-class.sh), and the peer's heap.
JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
READY_WITHIN = 120.0


@dataclass(frozen=True)
class Options:
    records: int
    ids: int
    partitions: int
    rates: list[float]
    rate_seconds: float
    repeat: int
    record: bool


# --- the broker, the database server and Connect's files --------------------------------


def script_env() -> dict[str, str]:
    return {
        **os.environ,
        "FLUXO_RUN_DIR": str(RUN_DIR),
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{KAFKA_PORT}",
        "KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
        "KAFKA_BROKERS": "1",
        "KAFKA_HEAP_MB": str(KAFKA_HEAP_MB),
        "DATABASE_URL": SERVER_URL,
        "POSTGRES_WAL_LEVEL": "logical",
    }


def script(name: str, action: str) -> str:
    """``scripts/<name>.sh <action>`` for the benchmark's own broker or server; its output."""
    done = subprocess.run(
        [str(ROOT / "scripts" / f"{name}.sh"), action],
        cwd=ROOT,
        env=script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"scripts/{name}.sh {action} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_infrastructure() -> tuple[int, int]:
    """A fresh broker and the database server (restarted, so that wal_level applies):
    their pids (the broker, the postmaster)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    script("kafka", "stop")  # one an interrupted run left
    for pattern in ("connect-*", "api-*.log", "scheduler-*.log"):  # an earlier run's
        for path in RUN_DIR.glob(pattern):
            path.unlink()
    shutil.rmtree(RUN_DIR / "kafka-data", ignore_errors=True)
    script("postgres", "stop")
    # Someone else's server there would pass the readiness checks in our place.
    if taken := [port for port in PORTS if port_in_use(port)]:
        raise BenchError(f"port(s) {', '.join(map(str, taken))} in use by another process")
    log.info("starting PostgreSQL on port %d and Kafka on port %d", POSTGRES_PORT, KAFKA_PORT)
    script("postgres", "start")
    script("kafka", "start")
    return pid_file("kafka"), pid_file("postgres")


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_infrastructure() -> None:
    for name in ("kafka", "postgres"):
        try:
            script(name, "stop")
        except BenchError as error:
            log.warning("%s", error)
    shutil.rmtree(RUN_DIR / "kafka-data", ignore_errors=True)


def pid_file(name: str) -> int:
    return int((RUN_DIR / f"{name}.pid").read_text().strip())


def connect_home() -> Path:
    """Connect's jars and the two connectors' plugin folders, fetched once into ``.cache/``
    and checked against ``bench/peer/jars.txt``; the folder is named after the list's
    digest, so a changed list gets a fresh one."""
    digest = sha256(JARS.read_bytes()).hexdigest()[:12]
    home = ROOT / ".cache" / "connect" / CONNECT_VERSION / f"home-{digest}"
    if home.is_dir():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching Kafka Connect and the Debezium connectors into %s", home.relative_to(ROOT))
    with tempfile.TemporaryDirectory(dir=home.parent) as tmp:
        libs, plugins = Path(tmp) / "libs", Path(tmp) / "plugins"
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "kafka" / "jars.py"), "fetch", str(libs),
             str(JARS)],
            check=False,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"fetching bench/peer/jars.txt failed:\n{done.stdout}{done.stderr}")
        for archive in sorted(libs.glob("*-plugin.tar.gz")):
            with tarfile.open(archive) as tar:
                tar.extractall(plugins, filter="data")
            archive.unlink()
        for jar in plugins.glob("*/*.jar"):
            if jar.name.startswith(WORKER_JARS):
                jar.unlink()
        Path(tmp).rename(home)
    return home


def broker_classpath() -> str:
    """The broker's jars (scripts/kafka.sh classpath): Connect runs on the same set."""
    return script("kafka", "classpath").strip().splitlines()[-1]


# --- Connect -----------------------------------------------------------------------------


@dataclass
class Connect:
    """A standalone worker, with the peer's two connectors created over its REST API."""

    home: Path
    classpath: str
    label: str
    http: aiohttp.ClientSession
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{CONNECT_PORT}"

    @property
    def log(self) -> Path:
        return RUN_DIR / f"{self.label}.log"

    def start(self) -> None:
        worker = RUN_DIR / f"{self.label}.properties"
        offsets = RUN_DIR / f"{self.label}.offsets"
        offsets.unlink(missing_ok=True)
        worker.write_text(
            config.properties(
                config.worker_properties(
                    bootstrap=f"localhost:{KAFKA_PORT}",
                    rest_port=CONNECT_PORT,
                    plugin_path=str(self.home / "plugins"),
                    offsets_file=str(offsets),
                )
            ),
            encoding="utf-8",
        )
        command = [
            "java",
            *config.CONNECT_HEAP,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka' / 'log4j2.properties'}",
            "-Dkafka.log.level=WARN",
            "-cp",
            f"{self.classpath}:{self.home / 'libs'}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker),
        ]
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def ready(self) -> None:
        async def answers() -> bool:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.http.get(self.url + "/connectors") as response:
                    return response.status == 200
            return False

        await self._until(answers, "Connect's REST API answering")

    async def create(self, name: str, settings: Mapping[str, str]) -> None:
        body = {"name": name, "config": dict(settings)}
        async with self.http.post(self.url + "/connectors", json=body) as response:
            if response.status >= 300:
                raise BenchError(f"creating {name}: {response.status} {await response.text()}")

    async def tasks(self, name: str, state: str, count: int) -> None:
        """Until ``name`` has ``count`` tasks in ``state``; a failed task fails the run."""

        async def reached() -> bool:
            async with self.http.get(f"{self.url}/connectors/{name}/status") as response:
                if response.status == 404:
                    return False
                status = await response.json()
            states = [task["state"] for task in status.get("tasks", [])]
            for task in [status["connector"], *status.get("tasks", [])]:
                if task["state"] == "FAILED":
                    raise BenchError(f"{name} failed: {task.get('trace', '')[:2000]}")
            return states.count(state) == count

        await self._until(reached, f"{name} with {count} task(s) {state}")

    async def operate(self, name: str, action: str) -> None:
        """``pause`` or ``resume`` a connector and its tasks."""
        url = f"{self.url}/connectors/{name}/{action}"
        # No body, but Connect's REST API refuses a request without a JSON content type.
        async with self.http.put(url, headers={"Content-Type": "application/json"}) as response:
            if response.status >= 300:
                raise BenchError(f"{action} {name}: {response.status} {await response.text()}")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def _until(self, check: Callable[[], Any], what: str) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while not await check():
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"Connect exited waiting for {what}; see {self.log}")
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not within {READY_WITHIN:.0f} s; see {self.log}")
            await asyncio.sleep(0.2)


# --- the output topic --------------------------------------------------------------------


class OutputWatcher(TopicFollower):
    """Reads a system's output topic from its start, without a group: the drain's
    completion, and the first arrival of the latency phase's ids."""

    def __init__(self, topic: str, event_row: Callable[[dict[str, Any]], tuple[Any, ...]]) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=f"localhost:{KAFKA_PORT}",
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        super().__init__(consumer, topic)
        self._event_row = event_row
        self.completion: Completion | None = None
        self.watched: set[str] = set()
        self.arrivals: dict[str, float] = {}
        self.progress = asyncio.Event()

    async def start(self, partitions: int) -> None:
        await self._follow(range(partitions), from_end=False)

    def _take(self, key: bytes | None, value: bytes | None, now: float) -> None:
        if value is None:
            return
        row = self._event_row(orjson.loads(value))
        rid = row[0]
        if self.completion is not None:
            self.completion.arrived(rid, hash(row), now)
        if rid in self.watched and rid not in self.arrivals:
            self.arrivals[rid] = now

    def _fetched(self) -> None:
        self.progress.set()


async def until_complete(watcher: OutputWatcher, what: str) -> bool:
    """Until the drain is complete, or nothing progressed for ``STALL_SECONDS``."""
    completion = watcher.completion
    assert completion is not None
    while not completion.done.is_set():
        before = completion.pending
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(completion.done.wait(), STALL_SECONDS)
        if not completion.done.is_set() and completion.pending == before:
            log.warning("%s: %d ids still without their last event; giving up", what, before)
            return False
    return True


async def until_arrived(watcher: OutputWatcher, ids: int, what: str) -> None:
    while len(watcher.arrivals) < ids:
        before = len(watcher.arrivals)
        watcher.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.progress.wait(), STALL_SECONDS)
        if len(watcher.arrivals) == before and not watcher.progress.is_set():
            log.warning("%s: %d of %d arrived; none for %.0f s", what, before, ids, STALL_SECONDS)
            return


# --- one run of each system --------------------------------------------------------------


@dataclass
class System:
    """What differs between the two systems in a run."""

    name: str
    input_topic: str
    output_topic: str
    event_row: Callable[[dict[str, Any]], tuple[Any, ...]]
    encode: Callable[[Mapping[str, Any]], bytes]
    pids: dict[str, int] = field(default_factory=dict)
    memory: tuple[str, ...] = ()


@dataclass
class Bench:
    options: Options
    run_id: str
    kafka_pid: int
    postmaster: int
    http: aiohttp.ClientSession
    connect_home: Path
    classpath: str
    runs: list[Run] = field(default_factory=list)

    def kafka(self, prefix: str) -> KafkaConfig:
        return KafkaConfig(
            bootstrap_servers=f"localhost:{KAFKA_PORT}",
            topic_cadastro=f"{prefix}.cadastro-produtos",
            topic_persistidos=f"{prefix}.produtos-persistidos",
            topic_dlq=f"{prefix}.cadastro-produtos.dlq",
            topic_dlq_redrives=f"{prefix}.cadastro-produtos.dlq.redrives",
            partitions=self.options.partitions,
        )

    async def peer(self, repeat: int) -> Run:
        prefix = f"bench-peer-{self.run_id}-{repeat}"
        kafka = self.kafka(prefix)
        topics = (f"{prefix}.input", f"{prefix}.output")
        await ensure_topics(kafka, topics)
        slot = f"bench_peer_{self.run_id}_{repeat}"
        name = slot
        async with scratch_database(SERVER_URL, name) as url:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(config.PEER_TABLE_SQL)
            finally:
                await conn.close()
            database = config.Database("localhost", POSTGRES_PORT, name, "fluxo", "fluxo")
            connect = Connect(self.connect_home, self.classpath, f"connect-{repeat}", self.http)
            try:
                connect.start()
                await connect.ready()
                await connect.create(
                    config.SOURCE,
                    config.source_config(topic=topics[1], database=database, slot=slot),
                )
                await connect.tasks(config.SOURCE, "RUNNING", 1)
                await until_slot_active(url, slot, connect)
                # Created running, then paused: paused tasks are started and hold their
                # connections, so that the drain does not count their start-up (a sink
                # created paused starts its tasks only when resumed).
                await connect.create(
                    config.SINK, config.sink_config(topic=topics[0], database=database)
                )
                await connect.tasks(config.SINK, "RUNNING", 2)
                await connect.operate(config.SINK, "pause")
                await connect.tasks(config.SINK, "PAUSED", 2)
                assert connect.process is not None
                system = System(
                    PEER,
                    topics[0],
                    topics[1],
                    config.peer_event_row,
                    config.peer_value,
                    {"connect": connect.process.pid},
                    ("connect",),
                )
                return await self.measure(
                    system,
                    url,
                    lambda: connect.operate(config.SINK, "resume"),
                    f"peer run {repeat}",
                )
            finally:
                connect.stop()
                await drop_slot(url, slot)
                await delete_topics(topics)

    async def fluxo(self, repeat: int) -> Run:
        prefix = f"bench-fluxo-{self.run_id}-{repeat}"
        kafka = self.kafka(prefix)
        await ensure_topics(kafka)
        async with scratch_database(SERVER_URL, f"bench_fluxo_{self.run_id}_{repeat}") as url:
            env = service_env(kafka, url, f"{prefix}.scheduler")
            api = Service("api", f"api-{repeat}", env, API_PORT, log_dir=RUN_DIR)
            scheduler = Service(
                "scheduler", f"scheduler-{repeat}", env, SCHEDULER_PORT, log_dir=RUN_DIR
            )
            try:
                api.start()
                await api.ready(self.http)
                scheduler.start()
                await scheduler.ready(self.http)
                settings = Settings.load(env | {"SCHEDULER_PORT": str(SCHEDULER_PORT)})
                await operate(settings, "pause")
                assert api.process is not None and scheduler.process is not None
                system = System(
                    FLUXO,
                    kafka.topic_cadastro,
                    kafka.topic_persistidos,
                    config.fluxo_event_row,
                    jsoncodec.dumps,
                    {"api": api.process.pid, "scheduler": scheduler.process.pid},
                    ("api", "scheduler"),
                )
                return await self.measure(
                    system, url, lambda: operate(settings, "resume"), f"fluxo-dados run {repeat}"
                )
            finally:
                scheduler.stop()
                api.stop()
                await delete_topics(kafka.topics)

    async def measure(self, system: System, url: str, resume: Callable[[], Any], what: str) -> Run:
        """Produce the workload, resume the system, time the drain, check the rows, then
        the latency at each rate."""
        options = self.options
        watcher = OutputWatcher(system.output_topic, system.event_row)
        await watcher.start(options.partitions)
        # Producers of the run's own: one that outlived the topics it wrote to (deleted after
        # each run) would log an error at every metadata refresh.
        try:
            async with producers() as (producer, paced):
                return await self._measure(system, url, resume, what, watcher, producer, paced)
        finally:
            await watcher.stop()

    async def _measure(
        self,
        system: System,
        url: str,
        resume: Callable[[], Any],
        what: str,
        watcher: OutputWatcher,
        producer: AIOKafkaProducer,
        paced: AIOKafkaProducer,
    ) -> Run:
        options = self.options
        expected: dict[str, Hashable] = {}

        def items() -> Iterator[tuple[bytes, bytes]]:
            for _, record in config.workload(self.run_id, options.records, options.ids):
                expected[record["productId"]] = hash(config.row(record))
                yield record["productId"].encode(), system.encode(record)

        _, produced = await produce_full_speed(producer, system.input_topic, items())
        log.info("%s: %d records produced in %.1f s", what, options.records, produced)
        watcher.completion = Completion(expected)
        pids = {**system.pids, "kafka": self.kafka_pid}
        async with Sampler(pids, memory=system.memory, postgres=self.postmaster) as sampler:
            resumed_at = time.time()
            await resume()
            complete = await until_complete(watcher, what)
        seconds = watcher.completion.last_arrival - resumed_at if complete else 0.0
        mismatched = mismatched_rows(expected, await rows(url))
        notes = [f"{mismatched:,} rows differ from their last record"] if mismatched else []
        if not complete:
            notes.append(f"{watcher.completion.pending:,} ids without their last event")
        run = Run(
            system.name,
            options.records,
            round(seconds, 3),
            complete and not mismatched,
            sampler.usage,
            notes=notes,
        )
        log.info("%s: drained in %.1f s, %.0f records/s", what, seconds, run.throughput)
        for rate in options.rates:
            measured = await self.latency(system, watcher, paced, rate)
            run = replace(run, rate=rate, latency=measured)
            log.info("%s: at %g/s %s", what, rate, run.latency)
        return run

    async def latency(
        self, system: System, watcher: OutputWatcher, paced: AIOKafkaProducer, rate: float
    ) -> Latency | None:
        """Fresh ids at ``rate``: from each input record's timestamp to its event's arrival."""
        count = max(1, round(rate * self.options.rate_seconds))
        records = list(config.workload(f"{self.run_id}r{rate:g}", count, count))
        keys = [record["productId"] for _, record in records]
        watcher.watched = set(keys)
        items = (
            (key.encode(), system.encode(record))
            for key, (_, record) in zip(keys, records, strict=True)
        )
        _, _, metadata = await produce_paced(paced, system.input_topic, iter(items), count, rate)
        await until_arrived(watcher, count, f"{system.name} at {rate:g}/s")
        spent = [
            watcher.arrivals[key] - sent.timestamp / 1000
            for key, sent in zip(keys, metadata, strict=True)
            if key in watcher.arrivals
        ]
        watcher.watched = set()
        return latency(spent)


def service_env(kafka: KafkaConfig, url: str, group: str) -> dict[str, str]:
    """One API and one scheduler as ``make up`` runs them (``.env.example``'s settings), on
    the benchmark's broker, database and ports."""
    defaults = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    return {
        **defaults,
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "KAFKA_TOPIC_CADASTRO_PRODUTO": kafka.topic_cadastro,
        "KAFKA_TOPIC_PRODUTOS_PERSISTIDOS": kafka.topic_persistidos,
        "KAFKA_TOPIC_DLQ": kafka.topic_dlq,
        "KAFKA_TOPIC_DLQ_REDRIVES": kafka.topic_dlq_redrives,
        "KAFKA_TOPIC_PARTITIONS": str(kafka.partitions),
        "KAFKA_CONSUMER_GROUP": group,
        "API_URL": f"http://127.0.0.1:{API_PORT}",
    }


async def rows(url: str) -> list[tuple[str, Hashable]]:
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch(config.ROWS_SQL)
    finally:
        await conn.close()
    return [(row["id"], hash(config.table_row(tuple(row)))) for row in found]


async def until_slot_active(url: str, slot: str, connect: Connect) -> None:
    """The source streams once its slot is active: the sink's writes before would be lost."""
    conn = await asyncpg.connect(url)
    try:

        async def active() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot
                )
            )

        await connect._until(active, f"replication slot {slot} active")
    finally:
        await conn.close()


async def drop_slot(url: str, slot: str) -> None:
    """The peer's slot, once Connect is gone (a slot keeps WAL, and its database alive)."""
    conn = await asyncpg.connect(database_url(url, "postgres"))
    try:
        await conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = $1 AND NOT active",
            slot,
        )
    finally:
        await conn.close()


async def delete_topics(topics: tuple[str, ...]) -> None:
    """A run's topics: 200,000 records a run would otherwise pile up on the disk."""
    admin = AIOKafkaAdminClient(bootstrap_servers=f"localhost:{KAFKA_PORT}")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if gone := [topic for topic in topics if topic in existing]:
            await admin.delete_topics(gone)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def producers() -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaProducer]]:
    """The full-speed producer, and the paced one (no lingering), as ``make bench`` uses."""
    kafka = KafkaConfig(bootstrap_servers=f"localhost:{KAFKA_PORT}")
    full, paced = create_producer(kafka), create_producer(kafka, linger_ms=0)
    await full.start()
    await paced.start()
    try:
        yield full, paced
    finally:
        await paced.stop()
        await full.stop()


async def run(options: Options, command: str) -> tuple[list[Run], dict[str, Any]]:
    run_id = uuid.uuid4().hex[:8]
    context: dict[str, Any] = {
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "records": options.records,
        "ids": options.ids,
        "partitions": options.partitions,
        "rates": ", ".join(f"{rate:,g}" for rate in options.rates) or "-",
        "rate_seconds": options.rate_seconds,
        "load_before": load_average(),
    }
    home = await asyncio.to_thread(connect_home)
    runs: list[Run] = []
    try:
        # Inside: a broker that fails to start leaves a database server to stop.
        kafka_pid, postmaster = await asyncio.to_thread(start_infrastructure)
        classpath = await asyncio.to_thread(broker_classpath)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            bench = Bench(options, run_id, kafka_pid, postmaster, http, home, classpath, runs)
            # The systems take turns, so that a load that comes and goes on a shared machine
            # spreads over both rather than falling on the runs of one.
            for repeat in range(1, options.repeat + 1):
                bench.runs.append(await bench.peer(repeat))
                bench.runs.append(await bench.fluxo(repeat))
    finally:
        await asyncio.to_thread(stop_infrastructure)
    context["load_after"] = load_average()
    return runs, context


def main(options: Options, command: str) -> str:
    """Runs the comparison; the table goes to ``.run/bench/`` (``bench/results/`` with
    ``record``) as ``<date>-peer.md`` and ``.json``."""
    runs, context = asyncio.run(run(options, command))
    markdown = render(runs, context)
    folder = RESULTS_DIR if options.record else OUTPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{context['started_at'][:10]}-peer"
    (folder / f"{stem}.md").write_text(markdown, encoding="utf-8")
    data = {"context": context, "runs": [asdict(run) for run in runs]}
    (folder / f"{stem}.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    log.info("results in %s", folder / f"{stem}.md")
    return markdown
