"""The rule that orders two writes of one product, and the bound on future timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.ordering import Position, Source, supersedes, too_far_ahead

T = datetime(2024, 6, 12, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def at(timestamp: datetime, partition: int | None = 0, offset: int = 0, **source: str) -> Position:
    if partition is None:
        return Position(timestamp)
    incarnation = source.get("incarnation", "id-1")
    return Position(timestamp, Source(source.get("topic", "t"), partition, offset, incarnation))


@pytest.mark.parametrize(
    ("new", "old", "wins"),
    [
        # One partition: the offset decides, whatever the timestamps say.
        (at(T - SECOND, offset=5), at(T, offset=4), True),
        (at(T + SECOND, offset=3), at(T, offset=4), False),
        (at(T, offset=4), at(T, offset=4), False),  # a replay of the same record
        # Two partitions, topics or incarnations: the later timestamp, the later arrival on
        # equal timestamps.
        (at(T - SECOND, 1, 9), at(T, 0, 1), False),
        (at(T + SECOND, 1, 0), at(T, 0, 9), True),
        (at(T, 1, 0), at(T, 0, 9), True),
        (at(T - SECOND, 0, 9, topic="u"), at(T, 0, 1), False),
        (at(T, 0, 0, incarnation="id-2"), at(T - SECOND, 0, 9), True),
        (at(T - SECOND, 0, 99, incarnation="id-2"), at(T, 0, 9), False),
        # Without a source (a direct HTTP write) on either side: the timestamp.
        (at(T, None), at(T, 0, 9), True),
        (at(T - SECOND, None), at(T, 0, 9), False),
        (at(T - SECOND, 0, 1), at(T, None), False),
        (at(T, None), at(T, None), True),
    ],
)
def test_the_offset_decides_within_a_partition_and_the_timestamp_across(
    new: Position, old: Position, wins: bool
) -> None:
    assert supersedes(new, old) is wins


def test_an_unknown_incarnation_is_the_same_only_as_another_unknown_one() -> None:
    unknown = Position(T, Source("t", 0, 9))
    assert not supersedes(Position(T - SECOND, Source("t", 0, 8)), unknown)
    assert not supersedes(Position(T - SECOND, Source("t", 0, 10, "id-1")), unknown)


def test_a_timestamp_within_the_tolerance_is_accepted() -> None:
    assert too_far_ahead(T + timedelta(seconds=60), T, 60) is None
    assert too_far_ahead(T - timedelta(days=400), T, 60) is None


def test_a_timestamp_beyond_the_tolerance_is_refused_naming_it_and_the_tolerance() -> None:
    reason = too_far_ahead(T + timedelta(minutes=59), T, 60)

    assert reason == (
        "timestamp 2024-06-12T12:59:00.000Z is 3540.000 s ahead of this server's clock "
        "(2024-06-12T12:00:00.000Z), beyond the tolerance of 60 s "
        "(FUTURE_TIMESTAMP_TOLERANCE_SECONDS)"
    )
    assert too_far_ahead(T + timedelta(milliseconds=1), T, 0) is not None
