"""``python -m bench --scaling``: throughput with 1, 2 and 3 schedulers, and with 1 to 3 relays.

Runs against the Kafka and PostgreSQL of ``make up`` but starts its own service processes
(on free ports, with topics and a database of its own, deleted at the end), so the figures
of the instances compare within one run:

- *Schedulers*: two API replicas, then 1, 2 or 3 schedulers in a fresh consumer group on a
  fresh 6-partition topic; once every scheduler holds partitions, N records are produced at
  full speed and the phase lasts until the last one is in ``products``.
- *Relays*: 1, 2 or 3 API replicas (one outbox relay each, sharing the relay slots) and no
  scheduler; once their slots cover all K, N events are written to the outbox in one
  transaction and the phase lasts until the outbox is empty (every event acknowledged by
  Kafka).

CPU is the user + system time of the services, every ``postgres`` process and Kafka during
the phase, per 1,000 records: the figure to compare on a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config import KafkaConfig, local_environ
from services.common.kafka import client_settings, create_producer, ensure_topics

from .database import scratch_database
from .pipeline import produce_full_speed
from .procs import (
    BROKER,
    CLOCK_TICKS,
    cpu_spent,
    cpu_ticks,
    load_average,
    pid_of,
    postgres_ticks,
)
from .records import records
from .settings import OUTPUT_DIR, RESULTS_DIR, ROOT, RUN_DIR, Settings

log = logging.getLogger("bench.scaling")

PARTITIONS = 6
LOG_DIR = RUN_DIR / "bench-scaling"


@dataclass
class Result:
    phase: str  # "schedulers" or "relays"
    instances: int
    records: int
    seconds: float
    cpu_seconds: float
    slots: int = 0

    @property
    def throughput(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_seconds * 1000 / self.records * 1000


async def poll_until(
    check: Callable[[], Awaitable[object]], *, every: float, what: str, within: float = 600
) -> None:
    """Until ``check()`` is truthy; fails naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """One service process of the benchmark's own."""

    module: str  # "api" or "scheduler"
    label: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_dir: Path = LOG_DIR

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port_name = "API_PORT" if self.module == "api" else "SCHEDULER_PORT"
        with (self.log_dir / f"{self.label}.log").open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.module}"],
                cwd=ROOT,
                env={**os.environ, **self.env, port_name: str(self.port)},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited; see {self.log_dir}/{self.label}.log")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(self.url + "/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.label} not ready within 90 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Machine:
    """CPU ticks of the benchmark's services, PostgreSQL and Kafka, process by process
    (``procs.cpu_spent`` of two readings: a backend that ends meanwhile lowers nothing)."""

    def __init__(self, services: Sequence[Service], kafka: int) -> None:
        self._pids = [s.process.pid for s in services if s.process is not None] + [kafka]

    def ticks(self) -> dict[int, int]:
        """pid → ticks so far, of the processes alive now."""
        ticks = postgres_ticks()
        for pid in self._pids:
            if spent := cpu_ticks(pid):  # 0 once the process is gone: left out
                ticks[pid] = spent
        return ticks


@dataclass
class Bench:
    settings: Settings
    kafka_pid: int
    env: dict[str, str]  # what the services started are given, with their own topics and database
    run_id: str
    database_url: str
    http: aiohttp.ClientSession
    services: list[Service] = field(default_factory=list)

    def kafka(self, name: str) -> KafkaConfig:
        """The project's Kafka settings (TLS, SASL, replication) with this phase's topics."""
        return replace(
            self.settings.kafka,
            topic_cadastro=f"bench-scaling-{self.run_id}-{name}.cadastro-produtos",
            topic_persistidos=f"bench-scaling-{self.run_id}-{name}.produtos-persistidos",
            topic_dlq=f"bench-scaling-{self.run_id}-{name}.cadastro-produtos.dlq",
            partitions=PARTITIONS,
        )

    def service_env(self, kafka: KafkaConfig) -> dict[str, str]:
        return {
            **self.env,
            "DATABASE_URL": self.database_url,
            "KAFKA_TOPIC_CADASTRO_PRODUTO": kafka.topic_cadastro,
            "KAFKA_TOPIC_PRODUTOS_PERSISTIDOS": kafka.topic_persistidos,
            "KAFKA_TOPIC_DLQ": kafka.topic_dlq,
            "KAFKA_TOPIC_DLQ_REDRIVES": kafka.topic_dlq_redrives,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "LOG_LEVEL": "WARNING",
        }

    async def start(self, module: str, count: int, env: dict[str, str]) -> list[Service]:
        started = [
            Service(module, f"{module}-{len(self.services) + n + 1}", env) for n in range(count)
        ]
        for service in started:
            service.start()
        self.services += started
        for service in started:
            await service.ready(self.http)
        return started

    def stop(self, services: Sequence[Service]) -> None:
        for service in services:
            service.stop()
            self.services.remove(service)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """One connection for a phase's queries: polling with a connection each time would
        start a backend per check, whose CPU the phase's postgres figure would count."""
        conn = await asyncpg.connect(self.database_url)
        try:
            yield conn
        finally:
            await conn.close()

    async def schedulers(self, count: int, records_count: int) -> Result:
        kafka = self.kafka(f"s{count}")
        await ensure_topics(kafka)
        env = self.service_env(kafka)
        apis = await self.start("api", 2, env)
        env["API_URL"] = ",".join(api.url for api in apis)
        env["KAFKA_CONSUMER_GROUP"] = f"bench-scaling-{self.run_id}-s{count}"
        schedulers = await self.start("scheduler", count, env)
        await self._all_assigned(schedulers)
        machine = Machine([*apis, *schedulers], self.kafka_pid)
        async with self.connection() as conn:
            producer = create_producer(kafka)
            try:
                await producer.start()
                await producer.partitions_for(kafka.topic_cadastro)  # not part of the figure
                target = await conn.fetchval("SELECT count(*) FROM products") + records_count
                ticks, started = machine.ticks(), time.monotonic()
                items = records(f"{self.run_id}s{count}", 0, records_count)
                await produce_full_speed(producer, kafka.topic_cadastro, items)
                await poll_until(
                    lambda: conn.fetchval(f"SELECT count(*) >= {target} FROM products"),
                    every=0.1,
                    what=f"{records_count} records persisted",
                )
                seconds = time.monotonic() - started
                cpu = cpu_spent(ticks, machine.ticks()) / CLOCK_TICKS
            finally:
                await producer.stop()
        self.stop([*schedulers, *apis])
        return Result("schedulers", count, records_count, seconds, cpu)

    async def _all_assigned(self, schedulers: Sequence[Service]) -> None:
        headers = {"Authorization": f"Bearer {self.settings.token}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = []
            for scheduler in schedulers:
                async with self.http.get(scheduler.url + "/status", headers=headers) as response:
                    held += (await response.json())["partitions"]
            if len(held) == PARTITIONS:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the schedulers did not share the partitions within 60 s")

    async def relays(self, count: int, events: int) -> Result:
        kafka = self.kafka(f"r{count}")
        await ensure_topics(kafka)
        apis = await self.start("api", count, self.service_env(kafka))
        async with self.connection() as conn:
            slots: int = await conn.fetchval("SELECT slots FROM outbox_relay_config")
            await poll_until(
                lambda: conn.fetchval(f"SELECT ({RELAYS_HOLDING}) >= {min(count, slots)}"),
                every=0.2,
                what="the relays sharing the slots",
                within=60,
            )
            await asyncio.sleep(2)  # the last rebalance settles
            document = next(iter(records(self.run_id, 0, 1)))[1].decode()
            machine = Machine(apis, self.kafka_pid)
            # From the INSERT on: the relays wake up at its commit (the outbox's NOTIFY).
            ticks, started = machine.ticks(), time.monotonic()
            await conn.execute(
                "INSERT INTO outbox (topic, key, payload)"
                " SELECT $1, 'r' || $2 || '-' || g, $3::json FROM generate_series(1, $4) g",
                kafka.topic_persistidos,
                str(count),
                document,
                events,
            )
            await poll_until(
                lambda: conn.fetchval("SELECT count(*) = 0 FROM outbox"),
                every=0.05,
                what="outbox drained",
            )
            seconds = time.monotonic() - started
            cpu = cpu_spent(ticks, machine.ticks()) / CLOCK_TICKS
        self.stop(apis)
        return Result("relays", count, events, seconds, cpu, slots)


# How many relays hold slots (distinct sessions holding a slot lock).
RELAYS_HOLDING = (
    "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
    " AND classid::bigint = 720431102"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def delete_topics(kafka: KafkaConfig, run_id: str) -> None:
    admin = AIOKafkaAdminClient(**client_settings(kafka))
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(f"bench-scaling-{run_id}-")]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


async def run_scaling(
    instances: Sequence[int], records_count: int, events: int
) -> tuple[list[Result], dict[str, object]]:
    settings = Settings.load()
    kafka_pid = pid_of("kafka", BROKER["kafka"])  # before anything starts: fails as BenchError
    env = local_environ(ROOT)
    run_id = uuid.uuid4().hex[:8]
    load_before = load_average()
    results: list[Result] = []
    async with (
        scratch_database(settings.api.database_url, f"bench_scaling_{run_id}") as database,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        bench = Bench(settings, kafka_pid, env, run_id, database, http)
        try:
            for count in instances:
                results.append(await bench.schedulers(count, records_count))
                log.info("%d scheduler(s): %.0f records/s", count, results[-1].throughput)
            for count in instances:
                results.append(await bench.relays(count, events))
                log.info("%d relay(s): %.0f events/s", count, results[-1].throughput)
        finally:
            bench.stop(list(bench.services))
            await delete_topics(settings.kafka, run_id)
    context: dict[str, object] = {
        "load_before": load_before,
        "load_after": load_average(),
        "run_id": run_id,
    }
    return results, context


def render(results: Sequence[Result], context: dict[str, object]) -> str:
    lines = [
        "| phase | instances | records | seconds | records/s | vs 1 instance "
        "| CPU ms per 1,000 records |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base: dict[str, float] = {}
    for result in results:
        base.setdefault(result.phase, result.throughput)
        what = (
            "schedulers (2 APIs)"
            if result.phase == "schedulers"
            else f"relays ({result.slots} slots)"
        )
        lines.append(
            f"| {what} | {result.instances} | {result.records:,} | {result.seconds:.1f} "
            f"| {result.throughput:,.0f} | {result.throughput / base[result.phase]:.2f} "
            f"| {result.cpu_ms_per_1000:,.0f} |"
        )
    lines.append(
        f"\nLoad average before and after: {context['load_before']} / {context['load_after']}."
    )
    return "\n".join(lines)


def main(instances: Sequence[int], records_count: int, events: int, record: bool) -> str:
    """Runs the phases; the table goes to ``.run/bench/`` (``bench/results/`` with ``record``)."""
    results, context = asyncio.run(run_scaling(instances, records_count, events))
    markdown = render(results, context)
    out = (RESULTS_DIR if record else OUTPUT_DIR) / f"{time.strftime('%Y-%m-%d')}-scaling.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown + "\n", encoding="utf-8")
    return markdown
