"""Re-driving dead letters, each exactly once per attempt across every scheduler.

A Kafka transaction is no compare-and-set: two schedulers could both read "not re-driven
yet". So a re-drive first writes a claim to the compacted state topic, in the partition of
its entry, and reads that partition back past its own claim; the earliest claim of the
entry's attempt holds it (for ``SCHEDULER_REDRIVE_CLAIM_SECONDS``) and only its writer
produces.

It produces the record and its outcome (when, as it was or corrected, a digest of the token,
the new offset) in one Kafka transaction whose id is the entry's attempt. A claim written
after the holder's expired takes the attempt over: its producer, of the same transactional
id, fences the earlier one, which can then commit nothing; it reads the state partition to
its end and produces only when no outcome was committed before. Exactly once per attempt
holds whoever dies or stalls where; the main consumer reads committed records only.

These are clients of their own (a producer, a reader of the state topic, a reader of
dead-letter positions), apart from the main consumer and its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from marshmallow import ValidationError

from ..common import jsoncodec
from ..common.config import KafkaConfig, RetryConfig
from ..common.contracts import check_manual, field_errors
from ..common.errors import ApiError, Unavailable
from ..common.kafka import (
    OFFSET_MAX,
    ManagedProducer,
    Outgoing,
    client_settings,
    create_producer,
    partition_for,
)
from ..common.metrics import SchedulerMetrics
from ..common.transform import format_timestamp
from .dead_letters import (
    Claim,
    DeadLetter,
    NotADeadLetter,
    claim_key,
    entry_key,
    holder,
    outcome_key,
    read_dead_letter,
    redrive_headers,
    state_value,
    token_digest,
    won,
)
from .follower import TopicFollower

if TYPE_CHECKING:
    from .dead_letter_index import DeadLetterIndex
from .records import Coordinates, PoisonError, decode

log = logging.getLogger(__name__)

# Longest wait for the state topic to be read back past a claim.
READ_BACK_WAIT = 10.0
# Longest wait for one dead-letter record fetched by its position.
FETCH_WAIT = 5.0
# A re-drive's transaction left open by a dead scheduler is aborted by the broker after
# this long; until then, consumers reading committed records wait at its partition.
TRANSACTION_TIMEOUT_MS = 10_000
# One try at producing a re-drive, and how many tries; how long a producer's stop is awaited.
PRODUCE_WAIT = 15.0
PRODUCE_TRIES = 3
STOP_WAIT = 5.0


@dataclass(frozen=True)
class Release:
    """A re-drive about to be produced: the dead letter, its attempt, and what goes back."""

    dead: DeadLetter
    attempt: int
    corrected: bool
    token: str
    value: bytes
    key: bytes | None


@dataclass(frozen=True)
class Landed:
    """Where a re-driven record landed, as an outcome recorded it."""

    topic: str
    partition: int
    offset: int


class RedriveLog(TopicFollower):
    """The state topic read from its beginning and followed: every claim and outcome.

    Memory: a claim and an outcome of a few hundred bytes per re-drive attempt.
    """

    def __init__(
        self, config: KafkaConfig, retry_config: RetryConfig, producer: ManagedProducer
    ) -> None:
        super().__init__(config.topic_dlq_redrives, config, retry_config, producer)
        self.claims: dict[tuple[str, int], list[Claim]] = {}
        # Entry: its outcomes by attempt.
        self.histories: dict[str, dict[int, dict[str, Any]]] = {}

    def history(self, source: Coordinates) -> list[dict[str, Any]]:
        """The recorded outcomes of an entry, first attempt first."""
        return [outcome for _, outcome in sorted(self.histories.get(str(source), {}).items())]

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take in one state record."""
        try:
            state = jsoncodec.loads(record.value or b"")
            key = (str(state["entry"]), int(state["attempt"]))
            kind = state["type"]
        except (ValueError, KeyError, TypeError):
            log.warning(
                "unreadable re-drive state at %d@%d ignored", record.partition, record.offset
            )
            return
        if kind == "claim":
            self.claims.setdefault(key, []).append(
                Claim(
                    record.offset,
                    str(state["claim"]),
                    at=epoch_ms(state.get("at")) or 0,
                    expires=epoch_ms(state.get("expires")) or OFFSET_MAX,
                )
            )
        elif kind == "outcome":
            self.histories.setdefault(key[0], {})[key[1]] = state

    def outcome(self, source: Coordinates, attempt: int) -> dict[str, Any] | None:
        return self.histories.get(str(source), {}).get(attempt)


def epoch_ms(text: Any) -> int | None:
    """Milliseconds since the epoch of a timestamp written by ``format_timestamp``."""
    try:
        return round(datetime.fromisoformat(str(text)).timestamp() * 1000)
    except ValueError:
        return None


@dataclass(frozen=True)
class Redrive:
    """One re-drive asked for: a dead-letter position, and the corrected value if any."""

    partition: int
    offset: int
    value: Any = None
    corrected: bool = False


class Redriver:
    def __init__(
        self,
        config: KafkaConfig,
        producer: ManagedProducer,
        state: RedriveLog,
        index: DeadLetterIndex,
        metrics: SchedulerMetrics,
        claim_seconds: float = 30.0,
    ) -> None:
        self._config = config
        self._claim_seconds = claim_seconds
        self._producer = producer
        self._state = state
        self._index = index
        self._metrics = metrics
        self._reader: AIOKafkaConsumer | None = None
        self._reading = asyncio.Lock()

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def dead_letter(self, partition: int, offset: int) -> DeadLetter:
        """The dead-letter record at a position; 404 when there is none."""
        entry = self._index.at(partition, offset)
        for dead in entry.positions if entry else ():
            if (dead.position.partition, dead.position.offset) == (partition, offset):
                return dead
        async with self._reading:
            if self._reader is None:
                reader = AIOKafkaConsumer(
                    **client_settings(self._config),
                    enable_auto_commit=False,
                    max_partition_fetch_bytes=2 * 1024 * 1024,
                    # A fetch of the last position asked for is awaited before the next
                    # one is sent: short, so that one look-up does not wait on another's.
                    fetch_max_wait_ms=20,
                )
                try:
                    await reader.start()
                except Exception as exc:
                    await reader.stop()
                    raise Unavailable(f"Kafka is not reachable: {exc}") from None
                self._reader = reader
            reader = self._reader
            tp = TopicPartition(self._config.topic_dlq, partition)
            if partition not in await self._producer.get().partitions_for(tp.topic):
                raise ApiError(404, f"The dead-letter topic has no partition {partition}.")
            reader.assign([tp])
            start = (await reader.beginning_offsets([tp]))[tp]
            end = (await reader.end_offsets([tp]))[tp]
            if not start <= offset < end:
                raise ApiError(
                    404, f"No dead letter at {partition}/{offset} (held: {start} to {end - 1})."
                )
            reader.seek(tp, offset)
            deadline = time.monotonic() + FETCH_WAIT
            while time.monotonic() < deadline:
                fetched = await reader.getmany(tp, timeout_ms=500, max_records=1)
                for record in fetched.get(tp, []):
                    if record.offset != offset:  # compacted or a transaction marker
                        raise ApiError(404, f"No dead letter at {partition}/{offset}.")
                    try:
                        return read_dead_letter(record)
                    except NotADeadLetter as exc:
                        raise ApiError(
                            404, f"The record at {partition}/{offset} is not a dead letter: {exc}."
                        ) from None
            raise Unavailable(f"The dead letter at {partition}/{offset} could not be read.")

    async def redrive(self, request: Redrive, token: str) -> dict[str, Any]:
        """Validate, claim, produce and record one re-drive; the answer's body.

        422 (``refused``) when the record is still invalid, 409 (``already``) when this
        attempt of the entry was claimed by another request.
        """
        try:
            corrected = corrected_record(request.value) if request.corrected else None
            dead = await self.dead_letter(request.partition, request.offset)
            value, key = corrected or as_it_is(dead)
        except ApiError as error:
            if error.status == 422:
                self._metrics.redrives.labels("refused").inc()
            raise
        # Attempt n follows the dead letter of attempt n - 1: a record re-driven and not
        # dead-lettered again since is not re-driven again.
        entry = self._index.entries.get(dead.source)
        attempt = max(dead.attempt, entry.attempt if entry else 0) + 1
        if not await self._claim(dead.source, attempt, request.corrected, token):
            raise self._already(dead.source, attempt)
        sent = await self._produce(Release(dead, attempt, request.corrected, token, value, key))
        self._metrics.redrives.labels("produced").inc()
        log.info(
            "re-drove %s (attempt %d, corrected=%s) to %s[%d]@%d",
            dead.source,
            attempt,
            request.corrected,
            sent.topic,
            sent.partition,
            sent.offset,
        )
        return {
            "entry": str(dead.source),
            "attempt": attempt,
            "corrected": request.corrected,
            "topic": sent.topic,
            "partition": sent.partition,
            "offset": sent.offset,
        }

    def _already(self, source: Coordinates, attempt: int) -> ApiError:
        """409: the attempt was re-driven, or is being re-driven, by another request."""
        self._metrics.redrives.labels("already").inc()
        message = f"Attempt {attempt} of {source} was re-driven by another request."
        claim = holder(self._state.claims.get((str(source), attempt), []))
        if self._state.outcome(source, attempt) is None and claim is not None:
            until = format_timestamp(datetime.fromtimestamp(claim.expires / 1000, UTC))
            message = (
                f"Attempt {attempt} of {source} is being re-driven by another request; "
                f"if it never completes, it may be re-driven again after {until}."
            )
        return ApiError(
            409, message, code="already", fields={"history": self._state.history(source)}
        )

    async def _produce(self, release: Release) -> Any:
        """Produce the record and its outcome in one transaction of the attempt's own
        transactional id; where the record landed. A try that does not finish within
        PRODUCE_WAIT is given up and tried again: the next producer of the same id fences
        the stuck one, so its transaction can no longer commit."""
        failure: Exception | None = None
        for again in range(PRODUCE_TRIES):
            try:
                async with asyncio.timeout(PRODUCE_WAIT):
                    return await self._produce_once(release, again=bool(again))
            except (KafkaError, TimeoutError) as exc:
                failure = exc
                log.warning(
                    "re-drive of %s (attempt %d) failed: %r",
                    release.dead.source,
                    release.attempt,
                    exc,
                )
        raise Unavailable(
            f"The re-drive of {release.dead.source} was not completed ({failure!r}); the "
            "attempt is free again once its claim expires, and may be retried."
        )

    async def _produce_once(self, release: Release, *, again: bool) -> Any:
        """One try. Starting the producer fences any earlier claimer of the attempt; then
        an outcome committed before means the attempt was done: by another request (409),
        or, on a try again, by this one's earlier try, whose commit was not seen to end."""
        dead, attempt, corrected = release.dead, release.attempt, release.corrected
        state_topic = self._config.topic_dlq_redrives
        partition = await self._state_partition(dead.source)
        producer = create_producer(
            self._config,
            transactional_id=f"fluxo-redrive/{state_topic}/{dead.source}#{attempt}",
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        try:
            await producer.start()
            await self._state.read_to_end(partition, READ_BACK_WAIT)
            done = self._state.outcome(dead.source, attempt)
            if done is not None:
                if again:  # this request still holds the claim: the outcome is its own
                    return Landed(str(done["topic"]), int(done["partition"]), int(done["offset"]))
                raise self._already(dead.source, attempt)
            async with producer.transaction():
                sent = await producer.send_and_wait(
                    self._config.topic_cadastro,
                    value=release.value,
                    key=release.key,
                    headers=redrive_headers(dead, attempt, corrected),
                    timestamp_ms=dead.timestamp,
                )
                outcome = state_value(
                    "outcome",
                    dead.source,
                    attempt,
                    at=format_timestamp(datetime.now(UTC)),
                    corrected=corrected,
                    token=token_digest(release.token),
                    position=str(dead.position),
                    topic=sent.topic,
                    partition=sent.partition,
                    offset=sent.offset,
                )
                await producer.send_and_wait(
                    state_topic,
                    value=jsoncodec.dumps(outcome),
                    key=outcome_key(dead.source, attempt),
                    partition=partition,
                )
            return sent
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(producer.stop()), STOP_WAIT)

    async def _claim(self, source: Coordinates, attempt: int, corrected: bool, token: str) -> bool:
        """Write a claim on the entry's attempt and read it back: whether it holds it."""
        current = holder(self._state.claims.get((str(source), attempt), []))
        now = datetime.now(UTC)
        if self._state.outcome(source, attempt) is not None or (
            current is not None and now.timestamp() * 1000 < current.expires
        ):
            return False  # done, or held: no need to write a losing claim
        claim = uuid.uuid4().hex
        value = state_value(
            "claim",
            source,
            attempt,
            claim=claim,
            at=format_timestamp(now),
            expires=format_timestamp(now + timedelta(seconds=self._claim_seconds)),
            corrected=corrected,
            token=token_digest(token),
        )
        sent = await self._state_send(claim_key(source, attempt, claim), source, value)
        try:
            await self._state.read_past(sent.partition, sent.offset, READ_BACK_WAIT)
        except TimeoutError:
            raise Unavailable(
                "The re-drive state could not be read back; the re-drive may be retried."
            ) from None
        claims = self._state.claims.get((str(source), attempt), [])
        return any(c.offset == sent.offset and won(c, claims) for c in claims)

    async def _state_partition(self, source: Coordinates) -> int:
        """The entry's partition of the state topic: every claim on an entry meets the
        others there, and its outcomes follow them."""
        topic = self._config.topic_dlq_redrives
        partitions = sorted(await self._producer.get().partitions_for(topic))
        return partition_for(entry_key(source), partitions)

    async def _state_send(self, key: bytes, source: Coordinates, value: dict[str, Any]) -> Any:
        """Write a state record into its entry's partition."""
        [sent] = await self._producer.send(
            [
                Outgoing(
                    self._config.topic_dlq_redrives,
                    value=jsoncodec.dumps(value),
                    key=key,
                    partition=await self._state_partition(source),
                )
            ]
        )
        return sent


def corrected_record(value: Any) -> tuple[bytes, bytes]:
    """The value and key of a corrected record, validated as the consumer validates; 422
    naming the fields otherwise. Its productId is its key."""
    try:
        product = check_manual(value)
    except ValidationError as error:
        raise ApiError(
            422,
            "The corrected record is still invalid; nothing was produced.",
            fields={"value": field_errors(error)},
        ) from None
    return jsoncodec.dumps(value), product["productId"].encode()


def as_it_is(dead: DeadLetter) -> tuple[bytes, bytes | None]:
    """The value and key of a dead letter re-driven as it is, when the consumer would now
    take it; 422 otherwise."""
    if dead.timestamp < 0:
        raise ApiError(
            422,
            "Only the place of this record is known (the Kafka client could not read it); "
            "produce it again from its source topic.",
            fields={"position": [f"{dead.source} was never read."]},
        )
    try:
        decode(dead.value)
    except PoisonError as error:
        raise ApiError(
            422,
            "The record is still invalid as it is; correct it with a 'value'. "
            "Nothing was produced.",
            fields={"value": [error.reason]},
        ) from None
    return dead.value or b"", dead.key
