"""From a Kafka record to the item the API persists, or to the reason it cannot be.

Pure functions: no I/O, so each rule is unit-tested on plain records.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from marshmallow import ValidationError

from ..common import jsoncodec
from ..common.contracts import ManualProduct, check_manual, field_errors
from ..common.kafka import OFFSET_MAX, PARTITION_MAX
from ..common.ordering import FUTURE_TIMESTAMP_TOLERANCE, too_far_ahead
from ..common.tracing import TRACEPARENT, Trace, record_trace
from ..common.transform import kafka_timestamp, transform


class KafkaRecord(Protocol):
    """What we read of an aiokafka ``ConsumerRecord``."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...  # a value may be null


class PoisonError(Exception):
    """A record that can never be processed; it goes to the dead-letter topic."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Work:
    """A record ready for the API: the transformed product, where it came from, its trace."""

    record: KafkaRecord
    item: dict[str, Any]
    trace: Trace


@dataclass(frozen=True)
class Poison:
    record: KafkaRecord
    stage: str
    reason: str
    # The record's trace: its own traceparent header, or the one started for it.
    trace: Trace | None = field(default=None, compare=False)


def decode(value: bytes | None) -> ManualProduct:
    """Parse and validate an input record's value."""
    if not value:
        raise PoisonError("decode", "empty value")
    try:
        data = jsoncodec.loads_exact(value)
    except jsoncodec.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise PoisonError("decode", "value is not UTF-8") from None
        raise PoisonError("decode", f"value is not JSON: {exc}") from None
    try:
        return check_manual(data)
    except ValidationError as error:
        raise PoisonError("validate", invalid_fields(field_errors(error))) from None


def invalid_fields(messages: Any) -> str:
    return "invalid fields: " + jsoncodec.dumps(messages).decode()


@dataclass(frozen=True)
class Intake:
    """What a record is checked and placed against beside itself: the time it is taken in,
    how far ahead of it a record's timestamp may be (seconds), and the incarnation (topic
    id) of each topic, where known."""

    now: datetime
    tolerance: float = FUTURE_TIMESTAMP_TOLERANCE
    incarnations: Mapping[str, str | None] = field(default_factory=dict)

    @functools.cached_property
    def latest_ms(self) -> int:
        """The latest record timestamp accepted, in Kafka's milliseconds (read per record)."""
        return int((self.now.timestamp() + self.tolerance) * 1000)


def current_intake() -> Intake:
    """An intake at the current time, with the default tolerance and no incarnation."""
    return Intake(datetime.now(UTC))


def to_work(record: KafkaRecord, trace: Trace | None = None, intake: Intake | None = None) -> Work:
    """The API batch item of a record: the transformed product, its source and its trace.

    A record stamped further ahead than the intake allows is poison (stage validate).
    A re-driven dead letter is ordered by its original coordinates (``redrive-of``; its
    timestamp is the original one already), never as the newer write its offset says.
    """
    intake = intake or current_intake()
    product = decode(record.value)
    if record.timestamp > intake.latest_ms and (reason := ahead(record.timestamp, intake)):
        raise PoisonError("validate", reason)
    trace = trace or record_trace(record.headers)
    source = redrive_of(record.headers) or Coordinates(
        record.topic, record.partition, record.offset
    )
    return Work(
        record,
        {
            "product": transform(product, record.timestamp),
            "source": {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "incarnation": intake.incarnations.get(source.topic),
            },
            "traceparent": trace.traceparent,
        },
        trace,
    )


REDRIVE_OF = "redrive-of"


@dataclass(frozen=True, order=True, slots=True)
class Coordinates:
    """Where a source record sits on its topic."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Coordinates | None:
        """``topic/partition/offset``, or None when it is not that (topic names hold no
        slash)."""
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[0] or "/" in parts[0]:
            return None
        topic, partition_text, offset_text = parts
        partition = bounded_int(partition_text, PARTITION_MAX)
        offset = bounded_int(offset_text, OFFSET_MAX)
        if partition is None or offset is None:
            return None
        return cls(topic, partition, offset)


INTEGER_DIGITS_MAX = 40  # leading zeros allowed; 2**63 has 19 digits


def bounded_int(text: str | None, maximum: int, minimum: int = 0) -> int | None:
    """TEXT as a decimal integer from MINIMUM to MAXIMUM, or None: ASCII digits only (and a
    minus sign when MINIMUM is negative), and not more of them than any such bound needs
    (int() of a header's or a URL's thousands of digits is slow, and past 4,300 an error)."""
    if text is None:
        return None
    digits = text[1:] if minimum < 0 and text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > INTEGER_DIGITS_MAX:
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def header(headers: Iterable[tuple[str, bytes | None]], name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in headers:
        if key == name and value is not None:
            found = value.decode("utf-8", "replace")
    return found


def redrive_of(headers: Iterable[tuple[str, bytes | None]]) -> Coordinates | None:
    """The original source coordinates a re-driven record carries, when valid."""
    text = header(headers, REDRIVE_OF)
    return Coordinates.parse(text) if text is not None else None


def ahead(timestamp_ms: int, intake: Intake) -> str | None:
    """Why a record's timestamp is too far ahead, or None."""
    try:
        moment = kafka_timestamp(timestamp_ms)
    except (OverflowError, ValueError, OSError):  # past year 9999
        moment = datetime.max.replace(tzinfo=UTC)
    return too_far_ahead(moment, intake.now, intake.tolerance)


def prepare(
    records: Iterable[KafkaRecord], intake: Intake | None = None
) -> tuple[list[Work], list[Poison]]:
    """Split fetched records into work for the API and poison for the dead-letter topic."""
    intake = intake or current_intake()
    work: list[Work] = []
    poison: list[Poison] = []
    for record in records:
        trace = record_trace(record.headers)
        try:
            work.append(to_work(record, trace, intake))
        except PoisonError as error:
            poison.append(Poison(record, error.stage, error.reason, trace))
    return work, poison


DEAD_LETTER_PREFIX = "dlq-"
# A record's own headers that look like ours are kept under this prefix, so that a
# dead-lettered record carries exactly one set of dlq-* headers, all of them ours.
ORIGINAL_PREFIX = "original-"


@dataclass(frozen=True)
class UnreadableRecord:
    """Where a record the Kafka client cannot parse sits; nothing else of it is known."""

    topic: str
    partition: int
    offset: int
    timestamp: int = -1
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes | None]] = ()


def unreadable(topic: str, partition: int, offset: int, error: Exception) -> Poison:
    """The dead letter of a record the Kafka client cannot parse (a header name that is not
    UTF-8, say): its place, and why; the original stays on the source topic."""
    return Poison(
        UnreadableRecord(topic, partition, offset),
        "decode",
        f"the Kafka client cannot read this record: {error}",
    )


def dead_letter_value(poison: Poison) -> bytes | None:
    """The original value; empty for a record with neither key nor value, which Kafka
    clients refuse to send."""
    record = poison.record
    if record.key is None and record.value is None:
        return b""
    return record.value


def dead_letter_headers(poison: Poison) -> list[tuple[str, bytes | None]]:
    """The original headers plus why and from where the record was dead-lettered.

    A record that came without a ``traceparent`` gets the trace started for it.
    """
    record = poison.record
    started = (
        [poison.trace.kafka_header]
        if poison.trace and all(name != TRACEPARENT for name, _ in record.headers)
        else []
    )
    return [
        *(
            (ORIGINAL_PREFIX + name if name.startswith(DEAD_LETTER_PREFIX) else name, value)
            for name, value in record.headers
        ),
        *started,
        ("dlq-reason", poison.reason.encode()),
        ("dlq-stage", poison.stage.encode()),
        ("dlq-source-topic", record.topic.encode()),
        ("dlq-source-partition", str(record.partition).encode()),
        ("dlq-source-offset", str(record.offset).encode()),
        ("dlq-source-timestamp", str(record.timestamp).encode()),
    ]
