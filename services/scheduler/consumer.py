"""The consumer loop: fetch a batch, hand it to the API, dead-letter poison, commit.

Offsets of a partition are committed only up to records that the API acknowledged or that
reached the dead-letter topic. Failures that may pass (API or Kafka down) are retried
with backoff while fetching is paused, so memory stays bounded and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    CorruptRecordException,
    IllegalStateError,
    KafkaError,
)
from aiokafka.structs import OffsetAndMetadata

from ..common.config import KafkaConfig
from ..common.errors import Unavailable
from ..common.kafka import (
    ManagedProducer,
    Outgoing,
    client_settings,
    ensure_topics,
    fetcher_running,
    stop_consumer,
    topic_ids,
)
from ..common.metrics import SchedulerMetrics
from ..common.retry import Stopped, retry, until_stopped
from ..common.tracing import SpanKind, Tracing
from .api_client import ApiClient, TransientError
from .config import SchedulerConfig
from .records import (
    Intake,
    Poison,
    Work,
    dead_letter_headers,
    dead_letter_value,
    prepare,
    unreadable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Dead letters /status/flow shows (the status page's list).
RECENT_DEAD_LETTERS = 20

# Longest wait of a rebalance for the batch in flight; past it the batch finishes anyway,
# and its records may be processed again by the partitions' next owner (at-least-once).
REVOKE_WAIT = 30.0
# Longest wait of /status for the broker's answers.
STATUS_WAIT = 5.0
# How often the consumer reads the cluster's metadata unasked (aiokafka's default is 5
# minutes). A consumer whose topic was deleted holds no partition and fetches nothing, so
# nothing else tells it that the topic was created again: this is how long it may wait.
METADATA_MAX_AGE_MS = 10_000


@dataclass(frozen=True)
class Replay:
    """Move this instance's partitions back to a point in time, or to given offsets."""

    timestamp: datetime | None = None
    offsets: dict[int, int] | None = None


class ReplayRefused(Exception):
    """A replay this instance cannot apply; nothing was moved."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__("The replay cannot be applied.")
        self.fields = fields


class ConsumerStalled(Exception):
    """The consumer stopped fetching without saying so; it is restarted."""


# What aiokafka raises from getmany() for a record it cannot parse (a header name that is not
# UTF-8, say), each time, until the partition moves past it.
UNREADABLE = (UnicodeDecodeError, CorruptRecordException)

# Failures that may pass: the API or Kafka down (the Kafka errors and Unavailable come from
# the dead-letter producer).
TRANSIENT = (TransientError, KafkaError, TimeoutError, Unavailable)


class _Watchdog:
    """When the consumer last made progress: fetched, delivered, or had nothing to do."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last = time.monotonic()

    def progress(self) -> None:
        self._last = time.monotonic()

    def overdue(self) -> bool:
        return time.monotonic() - self._last > self.timeout


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
        dead_lettered: Callable[[Any], bool] | None = None,
    ) -> None:
        self._config = config
        # Whether a record is on the dead-letter topic already: a replay does not put it
        # there a second time.
        self._dead_lettered = dead_lettered or (lambda record: False)
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
        self._committed: dict[TopicPartition, int] = {}  # the last this instance committed
        self._operator_paused = False
        self._failing = 0  # deliveries currently retrying; fetching is paused while > 0
        self._replays: asyncio.Queue[tuple[Replay, asyncio.Future[dict[str, int]]]] = (
            asyncio.Queue()
        )
        # Kafka's id of each consumed topic (its incarnation), sent with every record so that
        # the offsets of a topic deleted and created again are not compared with the old
        # one's; read again when a partition's offsets go back (see _know_incarnations).
        self._incarnations: dict[str, str | None] = {}
        self._incarnations_stale = True  # set by each assignment
        self._next_offsets: dict[TopicPartition, int] = {}
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
        """Consume until stopped; a failure or a stall restarts the consumer."""

        def restarting(exc: Exception) -> None:
            self.state = "restarting"
            if not isinstance(exc, ConsumerStalled):
                log.error("consumer failed", exc_info=exc)

        with contextlib.suppress(Stopped):
            await retry(
                self._consume,
                what="consuming",
                config=self._config.retry,
                log=log,
                stop=self._stopping,
                on_failure=restarting,
            )

    def stop(self) -> None:
        """Stop fetching; the batches in flight finish and are committed."""
        self._stopping.set()

    async def _consume(self) -> None:
        consumer = await until_stopped(
            retry(
                self._start_consumer,
                what="joining the consumer group",
                config=self._config.retry,
                log=log,
                stop=self._stopping,
            ),
            self._stopping,
        )
        self._consumer = consumer
        self.state = "paused" if self._operator_paused else "running"
        watchdog = _Watchdog(self._config.stall_timeout)
        try:
            while not self._stopping.is_set():
                if not self._replays.empty():
                    await self._apply_replays(consumer)
                try:
                    batches = await consumer.getmany(
                        timeout_ms=200, max_records=self._config.batch_size
                    )
                except UNREADABLE:
                    await self._past_unreadable(consumer)
                    batches = {}
                if batches:
                    await self._start_delivery(consumer, batches)
                # Overlap: the next batch is fetched and prepared while this one is at the
                # API; wait only when too many are in flight or nothing new arrived.
                async with self._commit_lock:
                    delivered = await self._commit_done(
                        consumer,
                        wait=not batches or len(self._in_flight) >= self._config.in_flight_batches,
                    )
                if batches or delivered or self._operator_paused or self._failing:
                    watchdog.progress()
                elif not self._in_flight and not self._uncommitted:
                    async with self._commit_lock:
                        await self._commit_past_markers(consumer)
                await self._check(consumer, watchdog)
            async with self._commit_lock:
                await self._commit_done(consumer, wait=True, everything=True)
        finally:
            for batch in self._in_flight:
                batch.delivery.cancel()
            self._in_flight.clear()
            self._uncommitted = {}  # delivered again by the partitions' next owner
            self._consumer = None
            self._failing = 0
            await stop_consumer(consumer)  # leaves the group at once, so partitions move on
            log.info("consumer stopped")

    async def _past_unreadable(self, consumer: AIOKafkaConsumer) -> None:
        """Hand on, one record at a time, what each partition holds up to a record that
        cannot be read; dead-letter that one by its place and move past it.

        aiokafka reads again every record of a producer batch up to the position, so the
        records after an unreadable one in the same batch cannot be read either: each is
        dead-lettered in turn (its original stays on the source topic).
        """
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            if await consumer.position(tp) >= ends[tp]:
                continue  # nothing waits there
            records: list[ConsumerRecord[bytes, bytes]] = []
            while len(records) < self._config.batch_size:
                try:
                    fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                except UNREADABLE as error:
                    if records:
                        await self._start_delivery(consumer, {tp: records})
                        records = []
                    offset = await consumer.position(tp)
                    consumer.seek(tp, offset + 1)
                    poison = [unreadable(tp.topic, tp.partition, offset, error)]
                    delivery = asyncio.create_task(
                        self._deliver(consumer, [], poison, f"{tp.topic}[{tp.partition}]@{offset}")
                    )
                    self._in_flight.append(_InFlight({tp: offset + 1}, delivery))
                    break
                if not fetched:
                    break
                records.extend(fetched[tp])
            if records:
                await self._start_delivery(consumer, {tp: records})

    async def _check(self, consumer: AIOKafkaConsumer, watchdog: _Watchdog) -> None:
        """Raise ``ConsumerStalled`` when the consumer no longer fetches: its fetch task
        ended, or nothing arrived for the stall timeout while records wait."""
        if not fetcher_running(consumer):
            self.state = "stalled"
            raise ConsumerStalled("the consumer's fetch task ended")
        if not watchdog.overdue():
            return
        try:
            async with asyncio.timeout(STATUS_WAIT):
                lag = await self._lag(consumer)
        except (KafkaError, TimeoutError) as exc:
            # The broker does not answer: a new consumer would fare no better.
            log.warning("no progress for %.0fs and no answer from Kafka: %s", watchdog.timeout, exc)
            lag = 0
        if lag > 0:
            self.state = "stalled"
            raise ConsumerStalled(
                f"nothing fetched for {watchdog.timeout:.0f}s while {lag} records wait"
            )
        watchdog.progress()  # caught up, or Kafka is down: nothing to fetch

    async def _lag(self, consumer: AIOKafkaConsumer) -> int:
        """Records on the broker past this instance's positions."""
        assigned = list(consumer.assignment())
        if not assigned:
            return 0
        ends = await consumer.end_offsets(assigned)
        positions = {tp: await consumer.position(tp) for tp in assigned}
        return sum(max(0, ends[tp] - positions[tp]) for tp in assigned)

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
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            # A re-drive's record is committed with its outcome, or never (its claimer was
            # fenced by another that took the attempt over).
            isolation_level="read_committed",
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

    async def _know_incarnations(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Read the topic ids again when a topic is new here or a partition's offsets went
        back: a recreated topic starts again at 0 (the consumer's position is reset to it),
        as does a replay, for which the id read is the same."""
        stale = {
            tp.topic
            for tp, records in batches.items()
            if self._incarnations_stale
            or tp.topic not in self._incarnations
            or records[0].offset < self._next_offsets.get(tp, 0)
        }
        if not stale:
            return
        async with asyncio.timeout(STATUS_WAIT):
            found = await topic_ids(consumer, sorted(stale))
        self._incarnations_stale = False
        for topic, incarnation in found.items():
            if topic in self._incarnations and self._incarnations[topic] != incarnation:
                log.warning(
                    "topic %s has a new id (%s, was %s): it was deleted and created again",
                    topic,
                    incarnation,
                    self._incarnations[topic],
                )
            self._incarnations[topic] = incarnation

    async def _start_delivery(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        # Every path that hands records on knows their topic's current id first.
        await self._know_incarnations(consumer, batches)
        records = [record for partition in batches.values() for record in partition]
        self._metrics.records.inc(len(records))
        intake = Intake(
            datetime.now(UTC), self._config.future_timestamp_tolerance, dict(self._incarnations)
        )
        work, poison = prepare(records, intake)
        offsets = {tp: partition[-1].offset + 1 for tp, partition in batches.items()}
        self._next_offsets.update(offsets)
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
    ) -> bool:
        """Commit the batches in flight that are done, oldest first; returns whether any was.

        With ``wait``, waits for the oldest one at least; with ``everything``, for all, and
        commits at once; otherwise the offsets wait for the commit interval to pass.
        Call it holding the commit lock.
        """
        offsets = self._uncommitted
        delivered = False
        while self._in_flight and (self._in_flight[0].delivery.done() or wait or everything):
            batch = self._in_flight[0]
            await asyncio.shield(batch.delivery)
            self._in_flight.popleft()
            offsets.update(batch.offsets)
            delivered = True
            wait = False
        now = time.monotonic()
        if offsets and (everything or now - self._committed_at >= self._config.commit_interval):
            self._uncommitted = {}
            self._committed_at = now
            await self._commit(consumer, offsets)
        return delivered

    async def _dead_letter(self, poison: Sequence[Poison]) -> None:
        poison = [item for item in poison if not self._dead_lettered(item.record)]
        await self._dead_letters.send(
            [
                Outgoing(
                    self._config.kafka.topic_dlq,
                    value=dead_letter_value(item),
                    key=item.record.key,
                    headers=dead_letter_headers(item),
                )
                for item in poison
            ]
        )
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
        failing = False

        def failed(_: Exception) -> None:
            nonlocal failing
            if not failing:
                failing = True
                self._failing += 1
                consumer.pause(*consumer.assignment())
                self.state = "retrying"
            self._metrics.retries.labels(what).inc()

        try:
            return await retry(
                action,
                what=what,
                config=self._config.retry,
                log=log,
                retry_on=TRANSIENT,
                on_failure=failed,
            )
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
        else:
            self._committed.update((tp, meta.offset) for tp, meta in to_commit.items())

    async def _commit_past_markers(self, consumer: AIOKafkaConsumer) -> None:
        """Idle, with everything handed on committed: commit the positions that moved past
        transaction markers only (a re-drive's commit takes an offset of its own), so that
        a caught-up partition shows no lag. A position is past only records handed on."""
        ahead = {}
        for tp in consumer.assignment():
            committed = self._committed.get(tp)
            if committed is not None and (position := await consumer.position(tp)) > committed:
                ahead[tp] = position
        if ahead:
            await self._commit(consumer, ahead)

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
        """Queue a replay for the loop (between batches) and wait for the new positions.

        Raises ``ReplayRefused`` (nothing moved) for a partition this instance does not
        hold or an offset outside the partition's records. Cancelled, it is not applied.
        """
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        await self._replays.put((request, done))
        return await done

    async def _apply_replays(self, consumer: AIOKafkaConsumer) -> None:
        async with self._commit_lock:
            # Batches still in flight would commit offsets past the replay point.
            await self._commit_done(consumer, wait=True, everything=True)
        while not self._replays.empty():
            request, done = self._replays.get_nowait()
            if done.done():
                continue  # given up by its caller
            try:
                positions = await self._seek(consumer, request)
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(positions)

    async def _targets(
        self, consumer: AIOKafkaConsumer, request: Replay
    ) -> dict[TopicPartition, int]:
        """Where each partition moves; every requested position checked before any move."""
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        starts = await consumer.beginning_offsets(assigned)
        ends = await consumer.end_offsets(assigned)
        if request.timestamp is not None:
            moment = int(request.timestamp.timestamp() * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(assigned, moment))
            return {tp: found[tp].offset if found[tp] else ends[tp] for tp in assigned}
        by_number = {tp.partition: tp for tp in assigned}
        targets: dict[TopicPartition, int] = {}
        errors: dict[str, list[str]] = {}
        for number, offset in sorted((request.offsets or {}).items()):
            tp = by_number.get(number)
            if tp is None:
                held = sorted(by_number)
                errors[str(number)] = [f"Partition {number} is not assigned here (held: {held})."]
            elif not starts[tp] <= offset <= ends[tp]:
                errors[str(number)] = [f"Must be between {starts[tp]} and {ends[tp]}."]
            else:
                targets[tp] = offset
        if errors:
            raise ReplayRefused({"offsets": errors})
        return targets

    async def _seek(self, consumer: AIOKafkaConsumer, request: Replay) -> dict[str, int]:
        targets = await self._targets(consumer, request)
        for tp, offset in targets.items():
            consumer.seek(tp, offset)
        # Committed at once, so the replay survives a restart before it is processed.
        await self._commit(consumer, targets)
        log.info("replay: moved %s", {tp.partition: offset for tp, offset in targets.items()})
        return {str(tp.partition): offset for tp, offset in targets.items()}

    # --- status ----------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        consumer = self._consumer
        return {
            "state": self.state if consumer is None or fetcher_running(consumer) else "stalled",
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
        if consumer is not None and fetcher_running(consumer):
            try:
                # Bounded: a consumer being replaced meanwhile may not answer.
                async with asyncio.timeout(STATUS_WAIT):
                    partitions = await self._partitions(consumer)
            except TimeoutError:
                partitions = []
        lag = self._metrics.consumer_lag
        lag.clear()  # partitions revoked since the last look have no lag here any more
        for partition in partitions:
            if partition["lag"] is not None:
                lag.labels(partition["topic"], str(partition["partition"])).set(partition["lag"])
        return partitions

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[dict[str, Any]]:
        partitions: list[dict[str, Any]] = []
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
        return partitions

    @property
    def consuming(self) -> bool:
        """Joined to the group, with a live fetch task."""
        return self._consumer is not None and fetcher_running(self._consumer)


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
        self._owner._committed = {}  # another owner may have committed since
        # The topic may have been deleted and created again meanwhile: its id is read again.
        self._owner._incarnations_stale = True
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
