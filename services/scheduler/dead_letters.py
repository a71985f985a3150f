"""Dead letters as an operator sees them, and the record a re-drive sends back.

Pure functions: what a dead-letter record says about its source record, the headers and
key of its re-drive, and which of several concurrent claims on a re-drive wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..common.kafka import OFFSET_MAX, PARTITION_MAX
from .records import (
    DEAD_LETTER_PREFIX,
    ORIGINAL_PREFIX,
    REDRIVE_OF,
    Coordinates,
    KafkaRecord,
    bounded_int,
    header,
    redrive_of,
)

REDRIVE_ATTEMPT = "redrive-attempt"
REDRIVE_CORRECTED = "redrive-corrected"
REDRIVE_HEADERS = (REDRIVE_OF, REDRIVE_ATTEMPT, REDRIVE_CORRECTED)


def attempt_of(headers: Iterable[tuple[str, bytes | None]]) -> int:
    """The re-drive attempt a record is (0 for a record never re-driven)."""
    return bounded_int(header(headers, REDRIVE_ATTEMPT), PARTITION_MAX) or 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter record read back: where it sits on the DLQ, and what it says."""

    position: Coordinates  # on the dead-letter topic
    at: int  # when it was dead-lettered (the dead-letter record's timestamp, ms)
    place: Coordinates  # the record dead-lettered (dlq-source-*)
    source: Coordinates  # the original source record (redrive-of when re-driven before)
    timestamp: int  # the original source record's, in ms; -1 when unknown
    attempt: int  # the re-drive attempt it came from (0: the original record)
    stage: str
    reason: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


class NotADeadLetter(ValueError):
    """A record on the dead-letter topic without the headers the scheduler writes."""


def read_dead_letter(record: KafkaRecord) -> DeadLetter:
    """What a dead-letter record says; ``NotADeadLetter`` when its dlq-* headers are not
    the scheduler's."""
    headers = record.headers
    topic = header(headers, "dlq-source-topic")
    partition = header(headers, "dlq-source-partition")
    offset = header(headers, "dlq-source-offset")
    stage = header(headers, "dlq-stage")
    if topic is None or partition is None or offset is None or stage is None:
        raise NotADeadLetter("missing dlq-source-* or dlq-stage headers")
    place = Coordinates.parse(f"{topic}/{partition}/{offset}")
    if place is None:
        raise NotADeadLetter("malformed dlq-source-* headers")
    timestamp = bounded_int(header(headers, "dlq-source-timestamp"), OFFSET_MAX, -OFFSET_MAX)
    return DeadLetter(
        position=Coordinates(record.topic, record.partition, record.offset),
        at=record.timestamp,
        place=place,
        source=redrive_of(headers) or place,
        timestamp=-1 if timestamp is None else timestamp,
        attempt=attempt_of(headers),
        stage=stage,
        reason=header(headers, "dlq-reason") or "",
        key=record.key,
        value=record.value,
        headers=list(headers),
    )


def original_headers(dead: DeadLetter) -> list[tuple[str, bytes | None]]:
    """The source record's own headers: the dead-letter topic's ``dlq-*`` dropped, the
    record's own ``dlq-*`` (kept as ``original-dlq-*``) restored, an earlier re-drive's
    headers dropped (the new ones replace them)."""
    restored: list[tuple[str, bytes | None]] = []
    for name, value in dead.headers:
        if name.startswith(DEAD_LETTER_PREFIX) or name in REDRIVE_HEADERS:
            continue
        if name.startswith(ORIGINAL_PREFIX + DEAD_LETTER_PREFIX):
            name = name[len(ORIGINAL_PREFIX) :]
        restored.append((name, value))
    return restored


def redrive_headers(
    dead: DeadLetter, attempt: int, corrected: bool
) -> list[tuple[str, bytes | None]]:
    return [
        *original_headers(dead),
        (REDRIVE_OF, str(dead.source).encode()),
        (REDRIVE_ATTEMPT, str(attempt).encode()),
        (REDRIVE_CORRECTED, b"true" if corrected else b"false"),
    ]


def token_digest(token: str) -> str:
    """Who re-drove: a short digest of the bearer token, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


# --- claims ------------------------------------------------------------------------


def entry_key(source: Coordinates) -> bytes:
    """The key, on the state topic, of everything about one entry: its partition there."""
    return str(source).encode()


def claim_key(source: Coordinates, attempt: int, claim: str) -> bytes:
    """Each claim has a key of its own, so that compaction never drops an earlier claim
    in favour of a later one (which would change the winner)."""
    return f"{source}#{attempt}#{claim}".encode()


def outcome_key(source: Coordinates, attempt: int) -> bytes:
    return f"{source}#{attempt}".encode()


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim on re-driving one entry's attempt, at its offset on the state topic, written
    at ``at`` and held until ``expires`` (ms since the epoch, by its writer's clock)."""

    offset: int
    claim: str
    at: int = 0
    expires: int = OFFSET_MAX  # a claim without a deadline is held for good


def holder(claims: Iterable[Claim]) -> Claim | None:
    """The claim that holds an entry's attempt: the earliest written, unless a later one
    was written after it expired, which then holds it in its place (a takeover of a
    claimer that never finished). Every claimer reads its partition back past its own
    claim before it looks, and the broker orders a partition, so all see the same one."""
    current: Claim | None = None
    for claim in sorted(claims, key=lambda claim: claim.offset):
        if current is None or claim.at >= current.expires:
            current = claim
    return current


def won(mine: Claim, claims: Iterable[Claim]) -> bool:
    """Whether ``mine`` holds its attempt among the claims read up to and including it."""
    current = holder(claim for claim in claims if claim.offset <= mine.offset)
    return current is not None and current.claim == mine.claim


def state_value(kind: str, source: Coordinates, attempt: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "entry": str(source), "attempt": attempt, **fields}
