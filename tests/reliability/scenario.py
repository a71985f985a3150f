"""One reliability scenario: its topics, database and service processes, and the checks
every scenario ends with."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg

from services.common import jsoncodec
from services.common.config import KafkaConfig
from services.common.transform import format_timestamp, kafka_timestamp

from ..helpers import DLQ_HEADERS, TOKEN, TopicReader, eventually, free_ports, topic_settings
from .harness import SETTINGS, Infrastructure, ServiceProcess, tail
from .workload import POISON_STAGES, Expected, Stream, Workload, build_workload

T = TypeVar("T")

BATCH_SIZE = 200  # small, so that a batch is at the API whenever a fault strikes


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    sent: int
    poison: int
    persisted: int
    published: int
    duplicates_in_products: int
    duplicates_published: int
    redelivered: int
    dead_lettered: int
    seconds: float


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    # Figures of the scenarios beyond the table's columns, one line each.
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None

    def markdown(self) -> str:
        lines = [
            "| scenario | sent (poison) | persisted | published | duplicates in products "
            "| duplicates on produtos-persistidos | redelivered to the API | dead-lettered "
            "| wall time |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r.scenario} | {r.sent} ({r.poison}) | {r.persisted} | {r.published} "
            f"| {r.duplicates_in_products} | {r.duplicates_published} | {r.redelivered} "
            f"| {r.dead_lettered} | {r.seconds:.1f} s |"
            for r in self.rows
        ]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        if self.seconds is not None:
            lines.append(
                f"\nWhole suite: {len(self.rows)} scenarios in {self.seconds:.0f} s "
                "(wall time, including the start and stop of its broker and database server)."
            )
        return "\n".join(lines)


@dataclass
class Scenario:
    name: str
    infra: Infrastructure
    kafka: KafkaConfig
    database_url: str
    consumer_group: str
    log_dir: Path
    http: aiohttp.ClientSession
    api_port: int
    scheduler_port: int
    results: Results
    started: float = field(default_factory=time.monotonic)
    # API outcome "unchanged" counted by API processes that are gone.
    _unchanged_before: float = 0.0
    _api: ServiceProcess | None = None
    _scheduler: ServiceProcess | None = None
    _extra: list[ServiceProcess] = field(default_factory=list)  # further replicas
    # What verify read from produtos-persistidos.
    published: list[Any] = field(default_factory=list)

    # --- processes ---------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
        env.update(SETTINGS)
        env.update(topic_settings(self.kafka))
        env.update(
            PYTHONUNBUFFERED="1",  # every line is in the log file when the process is killed
            API_PORT=str(self.api_port),
            SCHEDULER_PORT=str(self.scheduler_port),
            API_URL=f"http://127.0.0.1:{self.api_port}",
            API_TOKEN=TOKEN,
            KAFKA_TOPIC_REPLICATION_FACTOR=str(self.kafka.replication_factor),
            KAFKA_TOPIC_MIN_INSYNC_REPLICAS=str(self.kafka.min_insync_replicas),
            KAFKA_CONSUMER_GROUP=self.consumer_group,
            DATABASE_URL=self.database_url,
            DATABASE_POOL_SIZE="4",
            SCHEDULER_BATCH_SIZE=str(BATCH_SIZE),
            RETRY_INITIAL_DELAY="0.1",
            RETRY_MAX_DELAY="1",
            OUTBOX_POLL_INTERVAL="0.5",
            LOG_LEVEL="INFO",
        )
        return env

    def _service(self, name: str, port: int) -> ServiceProcess:
        return ServiceProcess(name, port, self.env(), self.log_dir, self.http)

    def replicas(
        self, apis: int, schedulers: int
    ) -> tuple[list[ServiceProcess], list[ServiceProcess]]:
        """Several APIs (the first is ``api``) and schedulers (the first is ``scheduler``),
        each on a port of its own; every scheduler lists every API in its API_URL."""
        api_ports = [self.api_port] + [free_ports() for _ in range(apis - 1)]
        env = {**self.env(), "API_URL": ",".join(f"http://127.0.0.1:{p}" for p in api_ports)}
        self._api = self.api
        self._scheduler = self.scheduler
        self._api.env = env
        self._scheduler.env = env
        self._api.label, self._scheduler.label = "api-1", "scheduler-1"
        scheduler_ports = [free_ports() for _ in range(schedulers - 1)]
        self._extra = [
            ServiceProcess(
                name,
                port,
                {**env, f"{name.upper()}_PORT": str(port)},  # API_PORT, SCHEDULER_PORT
                self.log_dir,
                self.http,
                label=f"{name}-{n}",
            )
            for name, ports in (("api", api_ports[1:]), ("scheduler", scheduler_ports))
            for n, port in enumerate(ports, start=2)
        ]
        every = [self._api, self._scheduler, *self._extra]
        return [s for s in every if s.name == "api"], [s for s in every if s.name == "scheduler"]

    @property
    def api(self) -> ServiceProcess:
        if self._api is None:
            self._api = self._service("api", self.api_port)
        return self._api

    @property
    def scheduler(self) -> ServiceProcess:
        if self._scheduler is None:
            self._scheduler = self._service("scheduler", self.scheduler_port)
        return self._scheduler

    @property
    def services(self) -> list[ServiceProcess]:
        return [s for s in (self._api, self._scheduler, *self._extra) if s is not None]

    async def start_services(self) -> None:
        self.api.start()
        self.scheduler.start()
        await self.api.ready()
        await self.scheduler.ready()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        """POST to the API with the token; the status and the JSON answer."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.http.post(self.api.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def get_json(self, service: ServiceProcess, path: str) -> tuple[int, Any]:
        """GET a protected endpoint of a service with the token; the status and the JSON."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.http.get(service.url + path, headers=headers) as response:
            return response.status, await response.json()

    async def api_unchanged(self) -> float:
        """Records the API saw again (outcome "unchanged"), over every API process so far."""
        current = await self.api.metric("persisted_records_total", outcome="unchanged")
        return self._unchanged_before + current

    async def before_api_goes(self) -> None:
        """Keep the API's count of redeliveries before its process (and counters) go."""
        self._unchanged_before += await self.api.metric(
            "persisted_records_total", outcome="unchanged"
        )

    def discard(self) -> None:
        for service in self.services:
            service.discard()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path}:\n{tail(path)}" for service in self.services for path in service.logs[-2:]
        )

    async def eventually(
        self, check: Callable[[], Awaitable[T | None]], *, within: float, what: str
    ) -> T:
        """``helpers.eventually``, with the end of every service's log in the failure."""
        return await eventually(check, within=within, what=what, every=0.1, context=self.logs)

    # --- workload ------------------------------------------------------------------

    def workload(self, count: int = 2000, poison_per_kind: int = 1, megabytes: int = 1) -> Workload:
        # Ids short of the 64-character limit, and of their own: the ids are the topics'.
        return build_workload(
            self.kafka.topic_cadastro.split(".")[0], count, poison_per_kind, megabytes
        )

    def stream(self, workload: Workload, seconds: float = 5.0) -> Stream:
        return Stream(
            self.kafka.bootstrap_servers, self.kafka.topic_cadastro, workload.messages, seconds
        )

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        finally:
            await conn.close()

    async def persisted(self) -> int:
        count: int = (await self.query("SELECT count(*) FROM products"))[0][0]
        return count

    async def wait_persisted(self, count: float, within: float = 60) -> None:
        """Until at least ``count`` products are in the table: the moment to strike."""

        async def reached() -> bool:
            return await self.persisted() >= count

        await self.eventually(reached, within=within, what=f"{count:.0f} products persisted")

    # --- the checks every scenario ends with ------------------------------------------

    async def verify(
        self,
        workload: Workload,
        stream: Stream,
        *,
        direct: dict[str, Expected] | None = None,
        within: float = 120,
    ) -> Row:
        """Every product exactly once in products and at least once on produtos-persistidos;
        exactly the poison on the dead-letter topic. Appends the scenario's row."""
        expected = {**workload.products, **(direct or {})}
        # The last record of each key is the one stored (a record sent again keeps its
        # timestamp).
        timestamps = {
            key.decode(): placements[-1].timestamp for key, placements in stream.placements.items()
        }

        async def all_persisted() -> bool:
            if not workload.versions:
                return await self.persisted() >= len(expected)
            # Products sent many times: until each holds its last version.
            names = {row["id"]: row["name"] for row in await self.query(
                "SELECT id, name FROM products"
            )}  # fmt: skip
            return all(names.get(key) == want.name for key, want in expected.items())

        await self.eventually(
            all_persisted, within=within, what=f"all {len(expected)} products persisted"
        )
        rows = await self.query(
            "SELECT id, name, price_amount, stock_quantity, availability_timestamp FROM products"
        )
        stored_ids = Counter(row["id"] for row in rows)
        assert [i for i, n in stored_ids.items() if n > 1] == [], "a product stored twice"
        assert set(stored_ids) == set(expected), (
            f"missing {sorted(set(expected) - set(stored_ids))[:10]}, "
            f"unexpected {sorted(set(stored_ids) - set(expected))[:10]}"
        )
        for row in rows:
            want = expected[row["id"]]
            got = Expected(row["name"], row["price_amount"], row["stock_quantity"])
            assert got == want, f"product {row['id']}: stored {got}, sent {want}"
            if row["id"] in timestamps:
                stored_ms = int(row["availability_timestamp"].timestamp() * 1000)
                assert stored_ms == timestamps[row["id"]], f"product {row['id']}: timestamp"

        published = self.published = await self._read_persistidos(
            expected, within, workload.versions
        )
        dead = await self._read_dead_letters(workload, stream, within)

        async def outbox_empty() -> bool:
            left: int = (await self.query("SELECT count(*) FROM outbox"))[0][0]
            return left == 0

        await self.eventually(outbox_empty, within=30, what="the outbox emptied")
        self.assert_clean_logs()

        result = Row(
            scenario=self.name,
            sent=len(workload.messages) + len(direct or {}),
            poison=len(workload.poison),
            persisted=len(rows),
            published=len(published),
            duplicates_in_products=sum(n - 1 for n in stored_ids.values()),
            # An event published again keeps its event-id.
            duplicates_published=len(published) - len({event_id(r) for r in published}),
            redelivered=round(await self.api_unchanged()) if self.api.running else -1,
            dead_lettered=len(dead),
            seconds=time.monotonic() - self.started,
        )
        self.results.rows.append(result)
        return result

    async def _read_persistidos(
        self,
        expected: dict[str, Expected],
        within: float,
        versions: dict[str, list[Expected]] | None = None,
    ) -> list[Any]:
        """Until every product's final event is on produtos-persistidos; each event must be
        what was sent for its product (its final version, or any of ``versions``)."""
        finals: set[tuple[bytes, str, int]] = set()  # (key, name, quantity) read so far
        read = 0

        def final_versions(records: list[Any]) -> set[bytes]:
            nonlocal read
            for record in records[read:]:
                product = jsoncodec.loads(record.value)
                finals.add((record.key, product["name"], product["availability"]["quantity"]))
            read = len(records)
            return {
                key.encode()
                for key, want in expected.items()
                if (key.encode(), want.name, want.quantity) in finals
            }

        async with TopicReader(
            self.kafka.topic_persistidos,
            self.kafka.partitions,
            bootstrap=self.kafka.bootstrap_servers,
        ) as reader:
            wanted = {key.encode() for key in expected}
            try:
                records = await reader.read_until(
                    lambda records: wanted <= final_versions(records),
                    within=within,
                    what=f"the final version of every one of {len(expected)} products "
                    "on produtos-persistidos",
                )
            except AssertionError as error:
                missing = sorted(wanted - final_versions(reader.records))
                raise AssertionError(f"{error}; missing {missing[:10]}\n{self.logs()}") from None
        for record in records:
            product = jsoncodec.loads(record.value)
            assert product["id"] in expected, f"unexpected event {product['id']}"
            sent = (versions or {}).get(product["id"]) or [expected[product["id"]]]
            got = Expected(
                product["name"],
                Decimal(str(product["pricing"]["amount"])),
                product["availability"]["quantity"],
            )
            assert got in sent, f"event of {product['id']}: {product}"
            assert event_id(record).isdigit()
        return records

    async def _read_dead_letters(
        self, workload: Workload, stream: Stream, within: float
    ) -> list[Any]:
        wanted = {(m.key, m.value) for m in workload.poison}
        async with TopicReader(
            self.kafka.topic_dlq, self.kafka.partitions, bootstrap=self.kafka.bootstrap_servers
        ) as reader:
            try:
                records = await reader.read_until(
                    lambda records: wanted <= {(r.key, r.value) for r in records},
                    within=within,
                    what=f"the {len(wanted)} poison records on the dead-letter topic",
                )
            except AssertionError as error:
                missing = sorted(k for k, _ in wanted - {(r.key, r.value) for r in reader.records})
                raise AssertionError(f"{error}; missing {missing}\n{self.logs()}") from None
        kinds = {m.key: m.kind for m in workload.poison}
        for record in records:
            assert (record.key, record.value) in wanted, f"not poison: {record.key!r}"
            headers = {name: value.decode() for name, value in record.headers}
            assert set(DLQ_HEADERS) <= set(headers), f"{record.key!r}: headers {headers}"
            assert headers["dlq-reason"], record.key
            assert headers["dlq-stage"] == POISON_STAGES[kinds[record.key]], headers
            assert headers["dlq-source-topic"] == self.kafka.topic_cadastro
            source = (
                int(headers["dlq-source-partition"]),
                int(headers["dlq-source-offset"]),
                int(headers["dlq-source-timestamp"]),
            )
            placements = [
                (p.partition, p.offset, p.timestamp) for p in stream.placements[record.key]
            ]
            assert source in placements, f"{record.key!r}: {source} not in {placements}"
        return records

    def assert_clean_logs(self) -> None:
        """No 500 answered, no crash: what the contract rules out, whatever the fault.

        (Libraries' own warnings may carry a traceback: asyncpg's pool logs one each time
        it fails to reconnect, for instance; those are not failures of the services.)
        """
        signs = (
            "unexpected error on",  # the error middleware answered 500
            "Error handling request",  # aiohttp answered 500 by itself
            "API answered 500",
            "Task exception was never retrieved",
            "ERROR services.",  # an error the services log themselves
            "CRITICAL",
        )
        for service in self.services:
            text = service.log_text()
            for sign in signs:
                assert sign not in text, f"{sign!r} in the log of {service.name}:\n{self.logs()}"


def event_id(record: Any) -> str:
    """The ``event-id`` header of a record of produtos-persistidos."""
    value: bytes = dict(record.headers)["event-id"]
    return value.decode()


def expected_document(product_id: str, expected: Expected, timestamp_ms: int) -> dict[str, Any]:
    """A transformed record, as POST /produto/scheduler takes it."""
    return {
        "id": product_id,
        "name": expected.name,
        "description": "Posted straight to the API",
        "pricing": {"amount": float(expected.price), "currency": "BRL"},
        "availability": {
            "quantity": expected.quantity,
            "timestamp": format_timestamp(kafka_timestamp(timestamp_ms)),
        },
        "category": "Direto",
    }
