"""The consumer loop: fetch a batch, hand it to the API, dead-letter poison, commit.

Offsets of a partition are committed only up to records that the API acknowledged or that
reached the dead-letter topic. Failures that may pass (API or Kafka down) are retried
with backoff while fetching is paused, so memory stays bounded and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from ..common.config import KafkaConfig
from ..common.errors import Unavailable
from ..common.kafka import ManagedProducer, client_settings, ensure_topics
from ..common.metrics import SchedulerMetrics
from ..common.retry import backoff_delays, retry_forever
from ..common.tracing import SpanKind, Tracing
from .api_client import ApiClient, TransientError
from .config import SchedulerConfig
from .records import Poison, Work, dead_letter_headers, prepare

log = logging.getLogger(__name__)

T = TypeVar("T")

# Dead letters /status/flow shows (the status page's list).
RECENT_DEAD_LETTERS = 20

# Longest wait of a rebalance for the batch in flight; past it the batch finishes anyway,
# and its records may be processed again by the partitions' next owner (at-least-once).
REVOKE_WAIT = 30.0


@dataclass(frozen=True)
class Replay:
    """Move this instance's partitions back to a point in time, or to given offsets."""

    timestamp: datetime | None = None
    offsets: dict[int, int] | None = None


@dataclass
class _InFlight:
    """A batch handed to the API, and the offsets to commit once it is done."""

    offsets: dict[TopicPartition, int]
    delivery: asyncio.Task[None]


class ProductConsumer:
    def __init__(
        self,
        config: SchedulerConfig,
        api: ApiClient,
        dead_letters: ManagedProducer,
        metrics: SchedulerMetrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._config = config
        self._api = api
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._tracing = tracing or Tracing()
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=RECENT_DEAD_LETTERS)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        # Batches in flight, oldest first; their offsets are committed in this order.
        self._in_flight: deque[_InFlight] = deque()
        # Held while committing; a rebalance takes it to commit what is in flight first.
        self._commit_lock = asyncio.Lock()
        # Offsets of acknowledged batches not committed yet (see commit_interval).
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._operator_paused = False
        self._failing = 0  # deliveries currently retrying; fetching is paused while > 0
        self._replays: asyncio.Queue[tuple[Replay, asyncio.Future[dict[str, int]]]] = (
            asyncio.Queue()
        )
        self.state = "starting"

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self._metrics.consumer_state.state(value)

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Consume until stopped; an unexpected failure restarts the consumer."""
        delays = backoff_delays(self._config.retry)
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception:
                delay = next(delays)
                log.exception("consumer failed; rejoining the group in %.2fs", delay)
                await asyncio.sleep(delay)

    def stop(self) -> None:
        """Stop fetching; the batches in flight finish and are committed."""
        self._stopping.set()

    async def _consume(self) -> None:
        consumer = await retry_forever(
            self._start_consumer,
            what="joining the consumer group",
            config=self._config.retry,
            log=log,
        )
        self._consumer = consumer
        self.state = "paused" if self._operator_paused else "running"
        try:
            while not self._stopping.is_set():
                if not self._replays.empty():
                    await self._apply_replays(consumer)
                batches = await consumer.getmany(
                    timeout_ms=200, max_records=self._config.batch_size
                )
                if batches:
                    self._start_delivery(consumer, batches)
                # Overlap: the next batch is fetched and prepared while this one is at the
                # API; wait only when too many are in flight or nothing new arrived.
                async with self._commit_lock:
                    await self._commit_done(
                        consumer,
                        wait=not batches or len(self._in_flight) >= self._config.in_flight_batches,
                    )
            async with self._commit_lock:
                await self._commit_done(consumer, wait=True, everything=True)
        finally:
            for batch in self._in_flight:
                batch.delivery.cancel()
            self._in_flight.clear()
            self._uncommitted = {}  # delivered again by the partitions' next owner
            self._consumer = None
            self._failing = 0
            await consumer.stop()  # leaves the group at once, so partitions move on
            log.info("consumer stopped")

    async def _start_consumer(self) -> AIOKafkaConsumer:
        kafka: KafkaConfig = self._config.kafka
        await ensure_topics(kafka)
        consumer = AIOKafkaConsumer(
            **client_settings(kafka),
            group_id=self._config.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=2 * 1024 * 1024,
            fetch_max_wait_ms=self._config.fetch_max_wait_ms,
            fetch_min_bytes=self._config.fetch_min_bytes,
        )
        consumer.subscribe([kafka.topic_cadastro], listener=_Rebalance(self))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        log.info("consuming %s as group %s", kafka.topic_cadastro, self._config.consumer_group)
        return consumer

    # --- batches -----------------------------------------------------------------

    def _start_delivery(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        records = [record for partition in batches.values() for record in partition]
        self._metrics.records.inc(len(records))
        work, poison = prepare(records)
        offsets = {tp: partition[-1].offset + 1 for tp, partition in batches.items()}
        ranges = ", ".join(
            f"{tp.topic}[{tp.partition}]@{partition[0].offset}-{partition[-1].offset}"
            for tp, partition in batches.items()
        )
        delivery = asyncio.create_task(self._deliver(consumer, work, poison, ranges))
        self._in_flight.append(_InFlight(offsets, delivery))

    async def _deliver(
        self, consumer: AIOKafkaConsumer, work: list[Work], poison: list[Poison], ranges: str
    ) -> None:
        """Hand a batch to the API and its poison to the dead-letter topic, retrying.

        The batch has a span of its own, linked to the trace of each of its records.
        """
        with self._tracing.span(
            "scheduler batch",
            kind=SpanKind.CONSUMER,
            links=self._tracing.links(
                trace.traceparent
                for trace in chain((item.trace for item in work), (item.trace for item in poison))
                if trace
            ),
            attributes={"messaging.batch.message_count": len(work) + len(poison)},
        ) as batch:
            if log.isEnabledFor(logging.DEBUG):
                for item in work:
                    log_record(logging.DEBUG, "record", item.record, item.trace.trace_id)
            rejected: list[Poison] = []
            if work:
                rejected = await self._retrying(
                    consumer, "persist", lambda: self._api.persist(work, batch)
                )
            dead = poison + rejected
            if dead:
                await self._retrying(consumer, "dead-letter", lambda: self._dead_letter(dead))
        persisted = len(work) - len(rejected)
        self._metrics.persisted.inc(persisted)
        log.info(
            "batch of %d records from %s: %d persisted, %d dead-lettered",
            len(work) + len(poison),
            ranges,
            persisted,
            len(dead),
            extra={"trace_id": batch.trace_id},
        )

    async def _commit_done(
        self, consumer: AIOKafkaConsumer, *, wait: bool, everything: bool = False
    ) -> None:
        """Commit the batches in flight that are done, oldest first.

        With ``wait``, waits for the oldest one at least; with ``everything``, for all, and
        commits at once; otherwise the offsets wait for the commit interval to pass.
        Call it holding the commit lock.
        """
        offsets = self._uncommitted
        while self._in_flight and (self._in_flight[0].delivery.done() or wait or everything):
            batch = self._in_flight[0]
            await asyncio.shield(batch.delivery)
            self._in_flight.popleft()
            offsets.update(batch.offsets)
            wait = False
        if not offsets:
            return
        now = time.monotonic()
        if everything or now - self._committed_at >= self._config.commit_interval:
            self._uncommitted = {}
            self._committed_at = now
            await self._commit(consumer, offsets)

    async def _dead_letter(self, poison: Sequence[Poison]) -> None:
        producer = self._dead_letters.get()
        deliveries = [
            await producer.send(
                self._config.kafka.topic_dlq,
                key=item.record.key,
                value=item.record.value,
                headers=dead_letter_headers(item),
            )
            for item in poison
        ]
        try:
            await asyncio.gather(*deliveries)
        except KafkaError:
            self._dead_letters.renew(producer)  # see ManagedProducer.renew
            raise
        for item in poison:
            self._metrics.dead_lettered.labels(item.stage).inc()
            record = item.record
            trace_id = item.trace.trace_id if item.trace else None
            log_record(
                logging.WARNING,
                f"dead-lettered ({item.stage}): {item.reason[:300]}",
                record,
                trace_id,
            )
            self.recent_dead_letters.appendleft(
                {
                    "time": time.time(),
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": record.key.decode("utf-8", "replace") if record.key else None,
                    "stage": item.stage,
                    "reason": item.reason[:300],
                    "trace_id": trace_id,
                }
            )

    async def _retrying(
        self, consumer: AIOKafkaConsumer, what: str, action: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``action`` until it succeeds; fetching is paused while it fails."""
        delays = backoff_delays(self._config.retry)
        failing = False
        try:
            while True:
                try:
                    return await action()
                except (TransientError, KafkaError, TimeoutError, Unavailable) as exc:
                    # The Kafka errors and Unavailable come from the dead-letter producer.
                    if not failing:
                        failing = True
                        self._failing += 1
                        consumer.pause(*consumer.assignment())
                        self.state = "retrying"
                    delay = next(delays)
                    self._metrics.retries.labels(what).inc()
                    log.warning("%s failed (%s); retrying in %.2fs", what, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            if failing:
                self._failing -= 1
                if self._failing == 0:
                    self._resume(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        owned = consumer.assignment()
        to_commit = {
            tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items() if tp in owned
        }
        if not to_commit:
            return
        try:
            await consumer.commit(to_commit)
        except CommitFailedError as exc:
            # The group rebalanced meanwhile: the next owner will process these again.
            log.warning("commit after a rebalance failed: %s", exc)

    # --- operator controls -----------------------------------------------------------

    def pause(self) -> None:
        self._operator_paused = True
        if self._consumer is not None:
            self._consumer.pause(*self._consumer.assignment())
        self.state = "paused"

    def resume(self) -> None:
        self._operator_paused = False
        if self._consumer is not None:
            self._resume(self._consumer)

    def _resume(self, consumer: AIOKafkaConsumer) -> None:
        if self._failing:
            self.state = "retrying"
            return
        if self._operator_paused:
            self.state = "paused"
            return
        consumer.resume(*consumer.assignment())
        self.state = "running"

    async def replay(self, request: Replay) -> dict[str, int]:
        """Queue a replay for the loop (between batches) and wait for the new positions."""
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        await self._replays.put((request, done))
        return await done

    async def _apply_replays(self, consumer: AIOKafkaConsumer) -> None:
        async with self._commit_lock:
            # Batches still in flight would commit offsets past the replay point.
            await self._commit_done(consumer, wait=True, everything=True)
        while not self._replays.empty():
            request, done = self._replays.get_nowait()
            try:
                done.set_result(await self._seek(consumer, request))
            except Exception as exc:
                done.set_exception(exc)

    async def _seek(self, consumer: AIOKafkaConsumer, request: Replay) -> dict[str, int]:
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        targets: dict[TopicPartition, int] = {}
        if request.timestamp is not None:
            moment = int(request.timestamp.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(assigned, moment))
            ends = await consumer.end_offsets(assigned)
            targets = {tp: found[tp].offset if found[tp] else ends[tp] for tp in assigned}
        elif request.offsets is not None:
            targets = {
                tp: request.offsets[tp.partition]
                for tp in assigned
                if tp.partition in request.offsets
            }
        for tp, offset in targets.items():
            consumer.seek(tp, offset)
        # Committed at once, so the replay survives a restart before it is processed.
        await self._commit(consumer, targets)
        log.info("replay: moved %s", {tp.partition: offset for tp, offset in targets.items()})
        return {str(tp.partition): offset for tp, offset in targets.items()}

    # --- status ----------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "group": self._config.consumer_group,
            "topic": self._config.kafka.topic_cadastro,
            "partitions": await self.partitions(),
            "counters": self.counters(),
        }

    def counters(self) -> dict[str, int]:
        return self._metrics.counts()

    async def partitions(self) -> list[dict[str, Any]]:
        """Committed offset, end offset (asked of the broker) and lag of each assigned
        partition; also sets the lag gauges."""
        consumer = self._consumer
        partitions: list[dict[str, Any]] = []
        if consumer is not None:
            assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
            try:
                # Asked of the broker: a paused partition's fetched high-water mark is stale.
                ends = await consumer.end_offsets(assigned) if assigned else {}
            except KafkaError:
                ends = {}
            for tp in assigned:
                try:
                    committed = await consumer.committed(tp)
                except (AssertionError, IllegalStateError, KafkaError):
                    continue  # revoked by a rebalance meanwhile
                end = ends.get(tp)
                partitions.append(
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": committed,
                        "end": end,
                        "lag": end - (committed or 0) if end is not None else None,
                    }
                )
        lag = self._metrics.consumer_lag
        lag.clear()  # partitions revoked since the last look have no lag here any more
        for partition in partitions:
            if partition["lag"] is not None:
                lag.labels(partition["topic"], str(partition["partition"])).set(partition["lag"])
        return partitions

    @property
    def consuming(self) -> bool:
        return self._consumer is not None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: ProductConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the batches in flight finish and commit, so that the next owner of these
        # partitions starts after them instead of processing them again.
        owner = self._owner
        consumer = owner._consumer
        started = time.monotonic()
        if consumer is not None:
            try:
                async with asyncio.timeout(REVOKE_WAIT), owner._commit_lock:
                    await owner._commit_done(consumer, wait=True, everything=True)
            except TimeoutError:
                log.warning("rebalance went ahead with batches still in flight")
        log.info(
            "partitions revoked: %s (waited %.2fs)",
            sorted(tp.partition for tp in revoked),
            time.monotonic() - started,
        )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
        if self._owner._operator_paused and self._owner._consumer is not None:
            self._owner._consumer.pause(*assigned)


def log_record(level: int, message: str, record: Any, trace_id: str | None) -> None:
    """One line about one record: where it is, its key and its trace id as fields."""
    key = record.key.decode("utf-8", "replace") if record.key else None
    log.log(
        level,
        "%s %s[%d]@%d key=%s",
        message,
        record.topic,
        record.partition,
        record.offset,
        key,
        extra={
            "trace_id": trace_id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": key,
        },
    )
