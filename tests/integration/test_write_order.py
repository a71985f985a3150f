"""The upsert's rule in PostgreSQL (``product_write_supersedes``) is the rule of
``services/common/ordering.py``: the two agree on every pair of a small exhaustive domain."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from services.api.config import SQL_DIR
from services.api.database import apply_migrations
from services.common.ordering import Position, Source, supersedes

T = datetime(2024, 6, 12, 12, tzinfo=UTC)
SOURCES = [None] + [
    Source(topic, partition, offset, incarnation)
    for topic, partition, offset, incarnation in itertools.product(
        ("t", "u"), (0, 1), (0, 1, 2), (None, "id-1", "id-2")
    )
]
POSITIONS = [
    Position(T + timedelta(milliseconds=step), source)
    for step, source in itertools.product((-1, 0, 1), SOURCES)
]

COMPARE = """
SELECT array_agg(product_write_supersedes(nt, ntp, np, no, ni, ot, otp, op, oo, oi) ORDER BY n)
FROM unnest($1::timestamptz[], $2::text[], $3::integer[], $4::bigint[], $5::text[],
            $6::timestamptz[], $7::text[], $8::integer[], $9::bigint[], $10::text[])
     WITH ORDINALITY AS t(nt, ntp, np, no, ni, ot, otp, op, oo, oi, n)
"""


def columns(position: Position) -> tuple[object, ...]:
    source = position.source
    if source is None:
        return (position.timestamp, None, None, None, None)
    return (position.timestamp, source.topic, source.partition, source.offset, source.incarnation)


async def test_postgresql_orders_every_pair_of_writes_as_the_rule_does(database: str) -> None:
    pairs = list(itertools.product(POSITIONS, POSITIONS))
    arrays: list[list[object]] = [[] for _ in range(10)]
    for new, old in pairs:
        for array, value in zip(arrays, (*columns(new), *columns(old)), strict=True):
            array.append(value)
    conn = await asyncpg.connect(database)
    try:
        await apply_migrations(conn, SQL_DIR)
        answers = await conn.fetchval(COMPARE, *arrays)
    finally:
        await conn.close()

    expected = [supersedes(new, old) for new, old in pairs]
    differing = [pair for pair, a, e in zip(pairs, answers, expected, strict=True) if a != e]
    assert differing == [], f"{len(differing)} of {len(pairs)} pairs differ, e.g. {differing[:3]}"
