"""The dead letters, one entry per source record, held in memory for the operator's list.

Built by following the dead-letter topic from its beginning (``TopicFollower``: its own
consumer, no group). Each entry keeps every dead-letter record of its source record (value
and headers included), so a page is answered from memory: about 3.8 KB of resident memory
per dead letter of a few hundred bytes (``python -m bench --dead-letters``).
"""

from __future__ import annotations

import base64
import bisect
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord

from ..common.config import KafkaConfig, RetryConfig
from ..common.kafka import ManagedProducer
from ..common.transform import format_kafka_timestamp
from .dead_letters import DeadLetter, NotADeadLetter, read_dead_letter
from .follower import TopicFollower
from .records import DEAD_LETTER_PREFIX, Coordinates, KafkaRecord, header
from .redrives import RedriveLog

log = logging.getLogger(__name__)

SortKey = tuple[int, int, int]


@dataclass(slots=True, eq=False)  # held in sets: by identity
class Entry:
    """A source record and every time it was dead-lettered, oldest first."""

    source: Coordinates
    positions: list[DeadLetter] = field(default_factory=list)

    @property
    def latest(self) -> DeadLetter:
        return self.positions[-1]

    @property
    def attempt(self) -> int:
        """The latest re-drive attempt that came back dead (0: the original record's)."""
        return max(dead.attempt for dead in self.positions)

    @property
    def sort_key(self) -> SortKey:
        latest = self.latest
        return (latest.at, latest.position.partition, latest.position.offset)


@dataclass(frozen=True)
class Filter:
    """Which entries a list shows; each given criterion must hold."""

    stage: str | None = None
    reason: str | None = None  # a substring of a reason
    key: str | None = None
    since: datetime | None = None  # dead-lettered at or after
    until: datetime | None = None  # dead-lettered before
    redriven: bool | None = None


def cursor_of(key: SortKey) -> str:
    return "-".join(str(part) for part in key)


CURSOR_PATTERN = "^[0-9]{1,19}-[0-9]{1,10}-[0-9]{1,19}$"


def parse_cursor(text: str) -> SortKey:
    """``ValueError`` when it is not a cursor this list gave out."""
    if not re.fullmatch(CURSOR_PATTERN[1:-1], text):
        raise ValueError("Not a cursor of this list.")
    at, partition, offset = (int(part) for part in text.split("-"))
    return (at, partition, offset)


def encoded(data: bytes | None) -> tuple[str | None, str]:
    """Text when it is UTF-8, base64 otherwise; and which."""
    if data is None:
        return None, "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), "base64"


def headers_of(headers: Sequence[tuple[str, bytes | None]]) -> list[dict[str, Any]]:
    shown = []
    for name, value in headers:
        text, encoding = encoded(value)
        shown.append({"name": name, "value": text, "encoding": encoding})
    return shown


def trace_id(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    traceparent = header(headers, "traceparent")
    parts = traceparent.split("-") if traceparent else []
    return parts[1] if len(parts) == 4 else None


def key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


def ms_of(moment: datetime) -> float:
    return moment.timestamp() * 1000


def moment(timestamp_ms: int) -> str | None:
    return format_kafka_timestamp(timestamp_ms) if timestamp_ms >= 0 else None


class DeadLetterIndex(TopicFollower):
    def __init__(
        self,
        config: KafkaConfig,
        retry_config: RetryConfig,
        producer: ManagedProducer,
        redrives: RedriveLog,
    ) -> None:
        super().__init__(config.topic_dlq, config, retry_config, producer)
        self._redrives = redrives
        self.entries: dict[Coordinates, Entry] = {}
        self._by_position: dict[tuple[int, int], Entry] = {}
        # Every record dead-lettered, as (topic, partition, offset, timestamp): a replay
        # does not dead-letter one again.
        self._places: set[tuple[str, int, int, int]] = set()
        self._ordered: list[Entry] = []  # by sort key, oldest first
        self._keys: list[SortKey] = []
        self._by_key: dict[str | None, set[Entry]] = {}  # by the latest dead letter's key

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            dead = read_dead_letter(record)
        except NotADeadLetter as exc:
            log.warning(
                "record %d@%d of the dead-letter topic skipped: %s",
                record.partition,
                record.offset,
                exc,
            )
            return
        self.add(dead)

    def add(self, dead: DeadLetter) -> None:
        entry = self.entries.get(dead.source)
        if entry is None:
            entry = self.entries[dead.source] = Entry(dead.source)
        else:
            self._unlist(entry)
            self._by_key[key_text(entry.latest.key)].discard(entry)
        entry.positions.append(dead)
        self._by_key.setdefault(key_text(dead.key), set()).add(entry)
        self._by_position[(dead.position.partition, dead.position.offset)] = entry
        place = dead.place
        self._places.add((place.topic, place.partition, place.offset, dead.timestamp))
        key = entry.sort_key
        at = bisect.bisect(self._keys, key)  # nearly always the end: new dead letters
        self._keys.insert(at, key)
        self._ordered.insert(at, entry)

    def _unlist(self, entry: Entry) -> None:
        at = bisect.bisect_left(self._keys, entry.sort_key)
        del self._keys[at]
        del self._ordered[at]

    def holds(self, record: KafkaRecord) -> bool:
        """Whether ``record`` was dead-lettered already (as the index has read so far)."""
        return (record.topic, record.partition, record.offset, record.timestamp) in self._places

    def at(self, partition: int, offset: int) -> Entry | None:
        return self._by_position.get((partition, offset))

    def matches(self, entry: Entry, criteria: Filter) -> bool:
        latest = entry.latest
        if criteria.stage is not None and latest.stage != criteria.stage:
            return False
        if criteria.reason is not None and not any(
            criteria.reason in dead.reason for dead in entry.positions
        ):
            return False
        if criteria.key is not None and key_text(latest.key) != criteria.key:
            return False
        if criteria.since is not None and latest.at < ms_of(criteria.since):
            return False
        if criteria.until is not None and latest.at >= ms_of(criteria.until):
            return False
        if criteria.redriven is not None:
            redriven = bool(self._redrives.histories.get(str(entry.source)))
            if redriven != criteria.redriven:
                return False
        return True

    def page(
        self, criteria: Filter, cursor: SortKey | None, limit: int
    ) -> tuple[list[Entry], str | None]:
        """Up to ``limit`` entries matching, newest first, after ``cursor``; and the cursor
        of the next page (None on the last)."""
        found: list[Entry] = []
        for entry in self._newest_first(criteria, cursor):
            if self.matches(entry, criteria):
                if len(found) == limit:
                    return found, cursor_of(found[-1].sort_key)
                found.append(entry)
        return found, None

    def matching(self, criteria: Filter) -> list[Entry]:
        """Every entry matching, newest first."""
        return [e for e in self._newest_first(criteria, None) if self.matches(e, criteria)]

    def _newest_first(self, criteria: Filter, cursor: SortKey | None) -> Iterator[Entry]:
        """The entries that may match, newest first, before ``cursor``: those of the key
        when one is asked for, otherwise those dead-lettered in the time range, so that
        neither reads the whole index."""
        if criteria.key is not None:
            held = sorted(self._by_key.get(criteria.key, ()), key=lambda e: e.sort_key)
            yield from (e for e in reversed(held) if cursor is None or e.sort_key < cursor)
            return
        end = bisect.bisect_left(self._keys, cursor) if cursor else len(self._keys)
        if criteria.until is not None:
            end = min(end, bisect.bisect_left(self._keys, (ms_of(criteria.until),)))
        start = 0
        if criteria.since is not None:
            start = bisect.bisect_left(self._keys, (ms_of(criteria.since),))
        for at in range(end - 1, start - 1, -1):
            yield self._ordered[at]

    def describe(self, entry: Entry) -> dict[str, Any]:
        """An entry as the list answers it."""
        latest = entry.latest
        value, value_encoding = encoded(latest.value)
        key, _ = encoded(latest.key)
        return {
            "entry": str(entry.source),
            "source": {
                "topic": entry.source.topic,
                "partition": entry.source.partition,
                "offset": entry.source.offset,
                "timestamp": moment(latest.timestamp),
            },
            "key": key,
            "value": value,
            "value_encoding": value_encoding,
            "headers": headers_of(
                [(n, v) for n, v in latest.headers if not n.startswith(DEAD_LETTER_PREFIX)]
            ),
            "dlq_headers": headers_of(
                [(n, v) for n, v in latest.headers if n.startswith(DEAD_LETTER_PREFIX)]
            ),
            "stage": latest.stage,
            "reason": latest.reason,
            "trace_id": trace_id(latest.headers),
            "dead_lettered_at": moment(latest.at),
            "attempt": entry.attempt,
            "positions": [
                {
                    "partition": dead.position.partition,
                    "offset": dead.position.offset,
                    "dead_lettered_at": moment(dead.at),
                    "attempt": dead.attempt,
                    "stage": dead.stage,
                    "reason": dead.reason,
                }
                for dead in entry.positions
            ],
            "redrives": self._redrives.history(entry.source),
        }
