"""Kafka plumbing both services use: topic creation and client settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from .config import KafkaConfig, RetryConfig
from .errors import Unavailable
from .retry import retry_forever

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


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
                    topic_configs={"min.insync.replicas": str(config.min_insync_replicas)},
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


# A record to send: topic, key, value and headers.
Outgoing = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


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
    for topic, key, value, headers in records:
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
                raise ValueError(f"a record of {len(value)} bytes exceeds the batch size")
    for (topic, partition), batch in batches.items():
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    return deliveries


class ManagedProducer:
    """A producer started in the background, so that a service starts while Kafka is down.

    ``get()`` answers 503 (``Unavailable``) until the broker has been reached once; after
    that, aiokafka reconnects by itself and sends fail (and are retried) while it is down.
    A sender whose delivery failed calls ``renew()``: the producer is then replaced.
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

        self._producer = await retry_forever(
            attempt, what="connecting to Kafka", config=self._retry, log=log
        )
        log.info("connected to Kafka at %s", self._config.bootstrap_servers)

    def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise Unavailable("Kafka is not reachable yet.")
        return self._producer

    def renew(self, failed: AIOKafkaProducer) -> None:
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
