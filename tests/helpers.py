"""Test helpers: isolated Kafka topics and databases, bounded waits, topic readers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

import bench.database
from services.api.relay_slots import SLOT_LOCKS
from services.common import jsoncodec
from services.common.config import KafkaConfig, local_environ

ROOT = Path(__file__).resolve().parents[1]
ENV = local_environ(ROOT)  # the settings `make test` runs with
BOOTSTRAP = ENV["KAFKA_BOOTSTRAP_SERVERS"]
DATABASE_URL = ENV["DATABASE_URL"]
TOKEN = "test-token"
# The headers the scheduler adds to every dead letter.
DLQ_HEADERS = (
    "dlq-reason",
    "dlq-stage",
    "dlq-source-topic",
    "dlq-source-partition",
    "dlq-source-offset",
    "dlq-source-timestamp",
)

T = TypeVar("T")


# Where free_ports looks: above the fixed ports the suite and the services use, below the
# kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768 and up by default). A port in
# that range can be taken by any outgoing connection, a broker's own client say, between the
# check here and the server's bind: one CI run lost a broker's start to that.
TEST_PORTS = range(20000, 32768)
GIVEN_PORTS: set[int] = set()  # never handed out twice, even before their server binds
PORT_CHOICE = random.Random()  # its own: a seeded test must not make every run pick alike


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that nothing listens on, in TEST_PORTS."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    low = min(TEST_PORTS.stop, int(ephemeral[0]))
    for _ in range(1000):
        first = PORT_CHOICE.randrange(TEST_PORTS.start, low - count)
        if GIVEN_PORTS.intersection(range(first, first + count)):
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("0.0.0.0", port))  # every interface, as servers bind
        except OSError:
            continue
        GIVEN_PORTS.update(range(first, first + count))
        return first
    raise AssertionError(f"no {count} consecutive free ports between {TEST_PORTS.start} and {low}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# Every topic name isolated_kafka gave out in this test session: deleted at its end.
SESSION_TOPICS: set[str] = set()


def isolated_kafka(partitions: int = 3) -> KafkaConfig:
    """Topics of the test's own, named after the real ones."""
    run = unique("t")
    config = KafkaConfig(
        bootstrap_servers=BOOTSTRAP,
        topic_cadastro=f"{run}.cadastro-produtos",
        topic_persistidos=f"{run}.produtos-persistidos",
        topic_dlq=f"{run}.cadastro-produtos.dlq",
        partitions=partitions,
    )
    SESSION_TOPICS.update(config.topics)
    return config


def topic_settings(kafka: KafkaConfig) -> dict[str, str]:
    """The environment that points a service started as a process at ``kafka``'s topics."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_CADASTRO_PRODUTO": kafka.topic_cadastro,
        "KAFKA_TOPIC_PRODUTOS_PERSISTIDOS": kafka.topic_persistidos,
        "KAFKA_TOPIC_DLQ": kafka.topic_dlq,
        "KAFKA_TOPIC_DLQ_REDRIVES": kafka.topic_dlq_redrives,
        "KAFKA_TOPIC_PARTITIONS": str(kafka.partitions),
    }


async def execute(database: str, statement: str) -> None:
    """Run one statement on a connection of its own to ``database``."""
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def delete_session_topics() -> None:
    """Delete the session's topics that exist on the local broker, so that a broker kept
    across many runs does not pile up thousands of them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        await admin.start()
        existing = SESSION_TOPICS & set(await admin.list_topics())
        if existing:
            await admin.delete_topics(sorted(existing))
    except KafkaError as error:  # no broker (down, or gone during the run): nothing to delete
        warnings.warn(f"the session's test topics were not deleted: {error!r}", stacklevel=1)
    finally:
        await admin.close()


def database_url(name: str, server: str = DATABASE_URL) -> str:
    """The URL of database ``name`` on the server of ``server`` (a database URL)."""
    return bench.database.database_url(server, name)


async def create_database(server: str = DATABASE_URL) -> str:
    """A fresh, empty database owned by the project's role; returns its URL."""
    name = unique("fluxo_test").replace("-", "_")
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name, server)


async def drop_database(url: str, server: str = DATABASE_URL) -> None:
    conn = await asyncpg.connect(server)
    try:
        await bench.database.drop_database(conn, urlsplit(url).path.lstrip("/"))
    finally:
        await conn.close()


async def fetchval(database: str, query: str, *args: Any) -> Any:
    """The first value of ``query``'s first row, on a connection of its own to ``database``."""
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def product_count(database: str) -> int:
    count: int = await fetchval(database, "SELECT count(*) FROM products")
    return count


async def persisted(database: str, product_id: str) -> bool:
    return bool(await fetchval(database, "SELECT 1 FROM products WHERE id = $1", product_id))


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str,
    every: float = 0.05,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming what did not happen
    (followed by ``context()``, e.g. the end of a service's log)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            message = f"{what} did not happen within {within:.0f}s"
            raise AssertionError(f"{message}\n{context()}" if context else message)
        await asyncio.sleep(every)


class TopicReader:
    """Reads every partition of a topic from the beginning, without a consumer group."""

    def __init__(self, topic: str, partitions: int = 3, *, bootstrap: str = BOOTSTRAP) -> None:
        self.topic = topic
        self.partitions = partitions
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=2 * 1024 * 1024,  # room for 1 MB records
            isolation_level="read_committed",  # as the scheduler reads: re-drives are
        )

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def read_until(
        self,
        done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
        *,
        within: float,
        what: str,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        deadline = time.monotonic() + within
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} did not happen within {within:.0f}s "
                    f"({len(self.records)} records read from {self.topic})"
                )
            batches = await self._consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                self.records.extend(batch)
        return self.records

    async def poll(self) -> None:
        """Read what arrived, waiting at most 200 ms."""
        for batch in (await self._consumer.getmany(timeout_ms=200)).values():
            self.records.extend(batch)

    async def read(self, count: int, *, within: float = 30) -> list[ConsumerRecord[bytes, bytes]]:
        return await self.read_until(
            lambda records: len(records) >= count,
            within=within,
            what=f"{count} records arriving on {self.topic}",
        )

    async def nothing_more(self, *, within: float) -> None:
        """Read for ``within`` seconds; used only to show that nothing else arrives."""
        before = len(self.records)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for batch in (await self._consumer.getmany(timeout_ms=100)).values():
                self.records.extend(batch)
        assert len(self.records) == before, f"unexpected records on {self.topic}"


def events_by_product(
    records: Iterable[ConsumerRecord[bytes, bytes]],
) -> dict[bytes, list[tuple[int, int]]]:
    """Each product's events on produtos-persistidos as (event id, quantity), in the order
    read, once duplicates (an event published again keeps its event-id) are dropped."""
    seen: set[bytes] = set()
    per_product: dict[bytes, list[tuple[int, int]]] = {}
    for record in records:
        event_id = dict(record.headers)["event-id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        quantity = jsoncodec.loads(record.value)["availability"]["quantity"]
        per_product.setdefault(record.key or b"", []).append((int(event_id), quantity))
    return per_product


async def produce(topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    await produce_placed(topic, (Placed(key, value) for key, value in records))


@dataclass(frozen=True)
class Placed:
    """A record to produce where and when a test says: its partition (None: the key's) and
    its timestamp in ms (None: the producer's clock)."""

    key: bytes | None
    value: bytes | None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: Iterable[tuple[str, bytes | None]] = ()


async def produce_placed(topic: str, records: Iterable[Placed]) -> list[RecordMetadata]:
    """Produce ``records`` in order and return where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5)
    await producer.start()
    try:
        deliveries = [
            await producer.send(
                topic,
                key=record.key,
                value=record.value,
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
                headers=list(record.headers),
            )
            for record in records
        ]
        return list(await asyncio.gather(*deliveries))
    finally:
        await producer.stop()


async def caught_up(scheduler: TestClient[Any, Any], partitions: int) -> None:
    """Until the scheduler behind ``scheduler`` holds ``partitions`` partitions and has
    committed every record on them."""

    async def done() -> bool:
        status = await (await scheduler.get("/status", headers=auth())).json()
        held = status["partitions"]
        return len(held) == partitions and all(p["lag"] == 0 for p in held)

    await eventually(done, within=30, what="the scheduler caught up with its topic")


async def wait_ready(
    client: TestClient[Any, Any],
    name: str,
    *,
    context: Callable[[], str] | None = None,
) -> None:
    """Until the service behind ``client`` answers 200 on /ready (at most 60 s)."""

    async def ready() -> bool:
        return (await client.get("/ready")).status == 200

    await eventually(ready, within=60, what=f"the {name} answering 200 on /ready", context=context)


async def relay_locks(database: str) -> dict[int, list[int]]:
    """The relay slots each PostgreSQL session holds, as pg_locks shows them."""
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT pid, objid::integer AS slot FROM pg_locks"
            " WHERE locktype = 'advisory' AND objsubid = 2 AND classid::bigint = $1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            SLOT_LOCKS,
        )
    finally:
        await conn.close()
    held: dict[int, list[int]] = {}
    for row in rows:
        held.setdefault(row["pid"], []).append(row["slot"])
    return {pid: sorted(slots) for pid, slots in held.items()}


async def flows(kafka: KafkaConfig, database: str, *, within: float, what: str = "") -> None:
    """Produce a new valid record to the entry topic and wait until it is persisted."""
    record = manual_record(unique("flow"))
    await produce(kafka.topic_cadastro, [(record["productId"].encode(), encode(record))])
    await eventually(
        lambda: persisted(database, record["productId"]),
        within=within,
        what=what or f"record {record['productId']} persisted",
    )


def manual_record(product_id: str, **changes: Any) -> dict[str, Any]:
    """An input record as the original description shows it."""
    record: dict[str, Any] = {
        "productId": product_id,
        "productName": "Nome do Produto",
        "productDescription": "Descrição do Produto",
        "price": 100.0,
        "currency": "BRL",
        "stockQuantity": 50,
        "category": "Categoria do Produto",
    }
    record.update(changes)
    return record


def transformed_record(
    product_id: str, timestamp: str = "2024-06-12T12:00:00.000Z", **changes: Any
) -> dict[str, Any]:
    """A transformed record (the API's batch items, produtos-persistidos), of the values
    ``manual_record`` carries."""
    record: dict[str, Any] = {
        "id": product_id,
        "name": "Nome do Produto",
        "description": "Descrição do Produto",
        "pricing": {"amount": 100.0, "currency": "BRL"},
        "availability": {"quantity": 50, "timestamp": timestamp},
        "category": "Categoria do Produto",
    }
    record.update(changes)
    return record


def encode(record: dict[str, Any]) -> bytes:
    return jsoncodec.dumps(record)


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class RawAnswer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(
    client: TestClient[Any, Any], request: bytes, *, within: float = 10
) -> RawAnswer:
    """Send bytes that no HTTP client library would send; the answer, read until its
    Content-Length (or the end of the connection), within ``within`` seconds."""
    server: TestServer = client.server  # type: ignore[assignment]
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(within):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = headers.get("content-length")
            body = await (reader.readexactly(int(length)) if length else reader.read())
        return RawAnswer(int(status_line.split()[1]), headers, body)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def terminate_sessions(database: str, application_name: str = "%") -> int:
    """End every other session on ``database`` whose application_name is LIKE the pattern, as
    a server shutting down or failing over does; returns how many were ended."""
    ended: int = await fetchval(
        database,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND application_name LIKE $1",
        application_name,
    )
    return ended


class TcpForwarder:
    """A port that forwards every connection to ``target`` (host, port): a second name for a
    real server, which a test opens and closes as a node of a cluster comes and goes, or
    freezes as a machine that vanished without closing anything."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self._target = target
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._closing = False

    def freeze(self) -> None:
        """Hold every byte from now on, in both directions, closing nothing."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def __aenter__(self) -> TcpForwarder:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        """Stop listening and cut every forwarded connection, as a vanished server does."""
        assert self._server is not None
        self._closing = True
        self._server.close()
        self._flowing.set()  # the held bytes go to the closed ends, and each pipe ends
        for writer in list(self._pipes):
            writer.close()
        if close_clients := getattr(self._server, "close_clients", None):
            close_clients()  # Python 3.13: any accepted connection not piped yet
        # Since Python 3.12 this also waits for every accepted connection to be closed.
        await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        if self._closing:  # accepted just before the close: cut it too
            upstream_writer.close()
            writer.close()
            return
        # Known before anything else runs, so that a close meanwhile cuts both ends.
        self._pipes.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                self._pipes.discard(sink)
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
