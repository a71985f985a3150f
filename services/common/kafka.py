"""Kafka plumbing both services use: topic creation and client settings."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from aiokafka.structs import RecordMetadata

from .config import KafkaConfig, RetryConfig
from .errors import Unavailable
from .retry import retry

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
# Kafka's partition numbers are int32 and its offsets int64.
PARTITION_MAX = 2**31 - 1
OFFSET_MAX = 2**63 - 1


def client_settings(config: KafkaConfig) -> dict[str, Any]:
    """How every Kafka client of the project connects: servers, TLS and SASL.

    Producers, consumers and admin clients are all built with these settings, so that a
    secured cluster needs nothing more than the ``KAFKA_SECURITY_*``/``KAFKA_SASL_*``/
    ``KAFKA_SSL_*`` variables.
    """
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "security_protocol": config.security_protocol,
    }
    if config.uses_ssl:
        # Verifies the broker's certificate and host name against the CA file (or the
        # system's CAs).
        settings["ssl_context"] = ssl.create_default_context(cafile=config.ssl_cafile or None)
    if config.uses_sasl:
        settings.update(
            sasl_mechanism=config.sasl_mechanism,
            sasl_plain_username=config.sasl_username,
            sasl_plain_password=config.sasl_password,
        )
    return settings


async def ensure_topics(config: KafkaConfig, names: Iterable[str] | None = None) -> None:
    """Create the configured topics that do not exist yet.

    Idempotent and safe to race: both services call it at start-up, and a topic that
    another process created meanwhile is not an error.
    """
    wanted = list(names if names is not None else config.topics)
    admin = AIOKafkaAdminClient(**client_settings(config))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=config.partitions,
                    replication_factor=config.replication_factor,
                    topic_configs={
                        "min.insync.replicas": str(config.min_insync_replicas),
                        **(
                            {"cleanup.policy": "compact"} if name in config.compacted_topics else {}
                        ),
                    },
                )
                for name in missing
            ]
        )
        for name, code, *_ in response.topic_errors:
            if code == TOPIC_ALREADY_EXISTS:
                continue
            if code != 0:
                raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
            log.info("created topic %s with %d partitions", name, config.partitions)
    finally:
        await admin.close()


def create_producer(config: KafkaConfig, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica and never duplicates on retry."""
    settings: dict[str, Any] = {
        **client_settings(config),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 512 * 1024,
        "request_timeout_ms": 15_000,
    }
    settings.update(overrides)
    return AIOKafkaProducer(**settings)


async def broker_reachable(producer: AIOKafkaProducer) -> bool:
    """Whether the cluster answers a metadata request within two seconds."""
    try:
        async with asyncio.timeout(2):
            return bool(await producer.client.fetch_all_metadata())
    except Exception:
        return False


# The one place that reads aiokafka's private attributes, written for aiokafka 0.14.0
# (``AIOKafkaConsumer._fetcher``, whose ``error_future`` is its fetch task, and
# ``AIOKafkaConsumer._client``): check it on upgrade.
def fetch_task(consumer: AIOKafkaConsumer) -> asyncio.Future[None] | None:
    """The consumer's background fetch task, or None before it started."""
    task = getattr(getattr(consumer, "_fetcher", None), "error_future", None)
    return task if isinstance(task, asyncio.Future) else None


def fetcher_running(consumer: AIOKafkaConsumer) -> bool:
    """Whether the consumer's fetch task still runs. When it ends ("Unexpected error in
    fetcher routine"), ``getmany()`` returns nothing for ever and no public API says so."""
    task = fetch_task(consumer)
    return task is not None and not task.done()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, also when its fetch task died: ``stop()`` then raises that
    task's error before it closes the connections, which are closed here instead."""
    try:
        await consumer.stop()
    except KafkaError as exc:
        log.warning("stopping a consumer whose fetch task failed: %s", exc)
        await consumer._client.close()


# --- topic ids --------------------------------------------------------------------
# aiokafka 0.14 speaks Metadata up to v5, which carries no topic id; v12 (Kafka 3.1 and
# later; 4.x still serves it) does. Only what reading topic ids needs is written here.


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: Any) -> bytes:
        value: bytes = data.read(16)
        return value


_NO_TOPIC_ID = bytes(16)


class _MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _TopicIdRequest(Request[_MetadataRequest_v12]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: Sequence[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequest_v12]) -> _MetadataRequest_v12:
        return request_struct_class(
            [(_NO_TOPIC_ID, name, {}) for name in self._topics], False, False, {}
        )


def topic_id_text(raw: bytes) -> str:
    """A topic id as Kafka's tools print it (URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def topic_ids(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> dict[str, str | None]:
    """Kafka's id of each topic (a topic deleted and created again has a new one), asked of
    one broker through the consumer's connections; None for a topic that does not exist or
    when the broker does not serve Metadata v12.

    Reads ``AIOKafkaConsumer._client`` (aiokafka 0.14.0): check it on upgrade.
    """
    client = consumer._client
    found: dict[str, str | None] = dict.fromkeys(topics)
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    try:
        response = await client.send(node, _TopicIdRequest(list(topics)))
    except (IncompatibleBrokerVersion, NotImplementedError) as exc:
        log.warning("the broker does not say its topic ids (Metadata v12): %s", exc)
        return found
    for error_code, name, raw_id, *_ in response.topics:
        if error_code == 0 and name in found and raw_id != _NO_TOPIC_ID:
            found[name] = topic_id_text(raw_id)
    return found


@dataclass(frozen=True)
class Outgoing:
    """A record to produce."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes | None]] = ()
    # Chosen by the partitioner when None; the time of the send when None.
    partition: int | None = None
    timestamp_ms: int | None = None


_MURMUR_M = 0x5BD1E995
_WORDS: dict[int, struct.Struct] = {}  # little-endian 32-bit words, by the bytes they take


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, as aiokafka's ``murmur2`` computes it, at half its cost:
    the words are read in one unpack, and each step masks only what can overflow. The
    relay hashes the key of every event it publishes."""
    length = len(data)
    h = 0x9747B28C ^ length
    end = length & ~3
    if end:
        words = _WORDS.get(end)
        if words is None:
            words = _WORDS[end] = struct.Struct(f"<{end // 4}I")
        for k in words.unpack_from(data):
            k = (k * _MURMUR_M) & 0xFFFFFFFF
            k ^= k >> 24
            h = ((h * _MURMUR_M) & 0xFFFFFFFF) ^ ((k * _MURMUR_M) & 0xFFFFFFFF)
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[end + 2] << 16
        if extra >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _MURMUR_M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _MURMUR_M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of a keyed record, as aiokafka's (and Java's) default partitioner
    chooses it: murmur2 of the key over the topic's partitions sorted by id."""
    hashed: int = murmur2(key)
    return partitions[(hashed & 0x7FFFFFFF) % len(partitions)]


async def send_batches(
    producer: AIOKafkaProducer, records: Sequence[Outgoing]
) -> list[asyncio.Future[Any]]:
    """Hand keyed records to ``producer`` as one batch per partition (several when one
    fills up), in order within each partition; returns a future per batch.

    A future per record, as ``send()`` gives, costs more CPU than the records themselves
    take to encode; the partition is the one ``send()`` would have chosen.
    """
    partitions: dict[str, list[int]] = {}
    batches: dict[tuple[str, int], Any] = {}
    deliveries: list[asyncio.Future[Any]] = []
    for record in records:
        topic, key, value, headers = record.topic, record.key, record.value, list(record.headers)
        if key is None:
            raise ValueError("records sent in batches need a key (their partition)")
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        place = (topic, partition_for(key, partitions[topic]))
        batch = batches.get(place)
        if batch is None:
            batch = batches[place] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            deliveries.append(await producer.send_batch(batch, topic, partition=place[1]))
            batch = batches[place] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes exceeds the batch size")
    for (topic, partition), batch in batches.items():
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


class ManagedProducer:
    """A producer started in the background, so that a service starts while Kafka is down.

    ``get()`` answers 503 (``Unavailable``) until the broker has been reached once; after
    that, aiokafka reconnects by itself and sends fail (and are retried) while it is down.
    ``send()`` is the one way to produce: a failed delivery replaces the producer (``_renew``).
    """

    def __init__(self, config: KafkaConfig, retry: RetryConfig, **overrides: Any) -> None:
        self._config = config
        self._retry = retry
        self._overrides = overrides
        self._producer: AIOKafkaProducer | None = None
        self._renewal: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Create the configured topics, then start the producer; retried until it works."""

        async def attempt() -> AIOKafkaProducer:
            await ensure_topics(self._config)
            producer = create_producer(self._config, **self._overrides)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            return producer

        self._producer = await retry(
            attempt, what="connecting to Kafka", config=self._retry, log=log
        )
        log.info("connected to Kafka at %s", self._config.bootstrap_servers)

    def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable("Kafka is not reachable yet.")
        return self._producer

    async def send(self, records: Sequence[Outgoing]) -> list[RecordMetadata]:
        """Produce ``records`` and wait until the broker acknowledged every one.

        ``Unavailable`` until the broker has been reached once. A failed delivery raises
        its error, once every record of the call is settled, and renews the producer.
        """
        producer = self.get()

        async def start() -> list[asyncio.Future[Any]]:
            return [
                await producer.send(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=record.partition,
                    timestamp_ms=record.timestamp_ms,
                )
                for record in records
            ]

        results = await self._deliver(producer, start)
        return [result for result in results if isinstance(result, RecordMetadata)]

    async def send_batched(self, records: Sequence[Outgoing]) -> None:
        """Produce keyed ``records`` as one aiokafka batch per partition (``send_batches``)
        and wait until the broker acknowledged them all; failures as for ``send()``.

        Several times cheaper in CPU than ``send()`` for many records, but without each
        record's offset.
        """
        producer = self.get()
        await self._deliver(producer, lambda: send_batches(producer, records))

    async def _deliver(
        self,
        producer: AIOKafkaProducer,
        start: Callable[[], Awaitable[list[asyncio.Future[Any]]]],
    ) -> list[Any]:
        """Await the deliveries ``start`` hands to ``producer``; a failed one raises its
        error once every delivery is settled, and renews the producer."""
        try:
            deliveries = await start()
        except KafkaError:
            self._renew(producer)
            raise
        results = await asyncio.gather(*deliveries, return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            if any(isinstance(failure, KafkaError) for failure in failures):
                self._renew(producer)
            raise failures[0]
        return results

    def _renew(self, failed: AIOKafkaProducer) -> None:
        """Replace ``failed``, whose delivery failed, by a new producer (in the background).

        aiokafka's idempotent producer numbers a batch when it first drains it; a batch that
        then expires while the broker is unreachable leaves a gap in the sequence the broker
        expects, and the broker refuses every later batch of that partition
        (OutOfOrderSequenceNumber) for as long as the producer lives. A new producer has a
        new producer id, whose sequences start afresh. Until it is connected, ``get()``
        answers ``Unavailable``.
        """
        if self._producer is not failed:
            return  # renewed already
        log.warning("a delivery to Kafka failed; replacing the producer")
        self._producer = None
        self._renewal = asyncio.create_task(self._replace(failed), name="kafka-producer-renew")

    async def _replace(self, failed: AIOKafkaProducer) -> None:
        # Stopped first: what it still holds is delivered or fails before anything is sent
        # again, so a record sent again never lands before an older one of the same key.
        try:
            await failed.stop()
        except Exception as exc:
            log.warning("stopping the failed Kafka producer: %s", exc)
        await self.start()

    async def ready(self) -> bool:
        return self._producer is not None and await broker_reachable(self._producer)

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
        if self._producer is not None:
            await self._producer.stop()  # flushes what is still buffered
            self._producer = None
