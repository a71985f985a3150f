"""Which of two writes of one product is the newer one, and which timestamps are too far ahead.

The rule, written once here (the upsert's ``WHERE`` in ``sql/006_write_order.sql`` mirrors it,
and a test holds the two equal):

1. Same source partition (same topic, partition and incarnation of the topic): the higher
   offset wins, whatever the timestamps say. Kafka keeps a key's records in that order, and
   that is the order a producer relies on.
2. Otherwise (two partitions, another incarnation of the topic, or a direct HTTP write
   without a source): the later source timestamp wins; on equal timestamps, the write that
   arrives later.

The inputs are plain values, not a Kafka record, so that a record re-driven from the
dead-letter topic can be ordered by its original coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .transform import format_timestamp

# Default of FUTURE_TIMESTAMP_TOLERANCE_SECONDS: the clock skew allowed between a producer
# and this server. A timestamp further ahead would beat every later write of its product
# from another partition (or over HTTP) until its time came.
FUTURE_TIMESTAMP_TOLERANCE = 60.0


@dataclass(frozen=True, slots=True)
class Source:
    """The Kafka record a write came from.

    ``incarnation`` tells apart the topics that have borne one name: Kafka's topic id
    (a deleted and recreated topic gets a new one, and its offsets start again at 0); None
    when it is not known.
    """

    topic: str
    partition: int
    offset: int
    incarnation: str | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a write stands among its product's writes: its source timestamp (the record's
    availability timestamp) and, for a record that came from Kafka, its source."""

    timestamp: datetime
    source: Source | None = None


def same_partition(a: Source, b: Source) -> bool:
    """Whether two writes come from one partition of one incarnation of one topic."""
    return a.topic == b.topic and a.partition == b.partition and a.incarnation == b.incarnation


def supersedes(new: Position, old: Position) -> bool:
    """Whether ``new``, arriving after ``old``, replaces it."""
    if new.source is not None and old.source is not None and same_partition(new.source, old.source):
        return new.source.offset > old.source.offset
    return new.timestamp >= old.timestamp


def too_far_ahead(moment: datetime, now: datetime, tolerance: float) -> str | None:
    """Why ``moment`` is refused (it is more than ``tolerance`` seconds after ``now``), or
    None when it is not. The same check and words on Kafka and over HTTP."""
    ahead = moment - now
    if ahead <= timedelta(seconds=tolerance):
        return None
    return (
        f"timestamp {_shown(moment)} is {ahead.total_seconds():.3f} s ahead of this "
        f"server's clock ({_shown(now)}), beyond the tolerance of {tolerance:g} s "
        "(FUTURE_TIMESTAMP_TOLERANCE_SECONDS)"
    )


def _shown(moment: datetime) -> str:
    try:
        return format_timestamp(moment)
    except OverflowError:  # past year 9999 in UTC: as it was written
        return moment.isoformat()
