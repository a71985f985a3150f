"""A topic read from its beginning and followed, by every partition, without a consumer
group: what the scheduler's in-memory views of the dead letters and their re-drives are
built from, apart from the main consumer and its group."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ..common.config import KafkaConfig, RetryConfig
from ..common.kafka import ManagedProducer, client_settings
from ..common.retry import Stopped, retry, until_stopped

log = logging.getLogger(__name__)


class TopicFollower:
    """Hands every record of ``topic`` to ``apply``, in order within each partition."""

    def __init__(
        self, topic: str, config: KafkaConfig, retry_config: RetryConfig, producer: ManagedProducer
    ) -> None:
        self.topic = topic
        self._config = config
        self._retry = retry_config
        self._producer = producer  # asked for the topic's partitions
        self._read_to: dict[int, int] = {}  # partition: next offset to read
        self._consumer: AIOKafkaConsumer | None = None
        self._caught_up = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = asyncio.Event()

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        raise NotImplementedError

    @property
    def caught_up(self) -> bool:
        """Whether everything the topic held when following started has been read."""
        return self._caught_up.is_set()

    async def run(self) -> None:
        with contextlib.suppress(Stopped):
            await retry(
                self._follow,
                what=f"following {self.topic}",
                config=self._retry,
                log=log,
                stop=self._stopping,
            )

    def stop(self) -> None:
        self._stopping.set()

    async def _follow(self) -> None:
        # Unavailable until the producer has started, and so created the topics.
        partitions = sorted(await self._producer.get().partitions_for(self.topic))
        consumer = AIOKafkaConsumer(
            **client_settings(self._config),
            enable_auto_commit=False,
            max_partition_fetch_bytes=2 * 1024 * 1024,
            # Re-drive outcomes are written in a transaction with their record: one aborted
            # (its claimer fenced) never happened.
            isolation_level="read_committed",
        )
        await consumer.start()
        self._consumer = consumer
        try:
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self._read_to.get(tp.partition, 0))
            ends = await consumer.end_offsets(tps)
            while not self._stopping.is_set():
                batches = await until_stopped(
                    consumer.getmany(timeout_ms=200, max_records=5000), self._stopping
                )
                for records in batches.values():
                    for record in records:
                        self.apply(record)
                for tp in tps:
                    self._read_to[tp.partition] = await consumer.position(tp)
                if all(self._read_to[tp.partition] >= ends[tp] for tp in tps):
                    self._caught_up.set()
                self._progress.set()
                self._progress.clear()
        finally:
            self._consumer = None
            await consumer.stop()

    async def read_past(self, partition: int, offset: int, within: float) -> None:
        """Wait until ``partition`` has been read past ``offset`` (``TimeoutError`` after
        ``within`` seconds)."""
        async with asyncio.timeout(within):
            while self._read_to.get(partition, 0) <= offset:
                await self._progress.wait()

    async def read_to_end(self, partition: int, within: float) -> None:
        """Wait until ``partition`` has been read up to its end as of now: everything
        committed to it before this call (``TimeoutError`` after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while (consumer := self._consumer) is None:
                await self._progress.wait()
            tp = TopicPartition(self.topic, partition)
            end = (await consumer.end_offsets([tp]))[tp]
            while self._read_to.get(partition, 0) < end:
                await self._progress.wait()
