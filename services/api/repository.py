"""Every SQL statement on products and outbox. The schema itself lives in ``sql/``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from ..common.contracts import TransformedProduct
from .database import Connection


@dataclass(frozen=True)
class Source:
    """The Kafka record a transformed product came from."""

    topic: str
    partition: int
    offset: int


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


# One statement, one round trip: upsert the batch and write an outbox event for every row
# inserted or changed. A row changes only for a newer source record (availability
# timestamp, then offset) with different content, so a replay never regresses a row and a
# duplicate writes no event. The published payload is built from the row as stored; the
# event keeps the record's trace and, for a record from Kafka, its source timestamp.
UPSERT_PRODUCTS = """
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::integer[],
        $7::timestamptz[], $8::text[], $9::text[], $10::integer[], $11::bigint[], $13::text[]
    ) AS t(id, name, description, price_amount, price_currency, stock_quantity,
           availability_timestamp, category, source_topic, source_partition, source_offset,
           traceparent)
), written AS (
    INSERT INTO products AS p (
        id, name, description, price_amount, price_currency, stock_quantity,
        availability_timestamp, category, source_topic, source_partition, source_offset)
    SELECT id, name, description, price_amount, price_currency, stock_quantity,
           availability_timestamp, category, source_topic, source_partition, source_offset
    FROM input
    ON CONFLICT (id) DO UPDATE SET
        name = EXCLUDED.name,
        description = EXCLUDED.description,
        price_amount = EXCLUDED.price_amount,
        price_currency = EXCLUDED.price_currency,
        stock_quantity = EXCLUDED.stock_quantity,
        availability_timestamp = EXCLUDED.availability_timestamp,
        category = EXCLUDED.category,
        source_topic = EXCLUDED.source_topic,
        source_partition = EXCLUDED.source_partition,
        source_offset = EXCLUDED.source_offset,
        updated_at = now()
    WHERE (EXCLUDED.availability_timestamp, coalesce(EXCLUDED.source_offset, -1))
          > (p.availability_timestamp, coalesce(p.source_offset, -1))
      AND (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price_amount,
           EXCLUDED.price_currency, EXCLUDED.stock_quantity,
           EXCLUDED.availability_timestamp, EXCLUDED.category)
          IS DISTINCT FROM
          (p.name, p.description, p.price_amount, p.price_currency, p.stock_quantity,
           p.availability_timestamp, p.category)
    RETURNING p AS product, p.xmax = 0 AS inserted
), events AS (
    INSERT INTO outbox (topic, key, payload, traceparent, source_timestamp)
    SELECT $12, (w.product).id, product_document(w.product), i.traceparent,
           CASE WHEN i.source_topic IS NOT NULL THEN i.availability_timestamp END
    FROM written w JOIN input i ON i.id = (w.product).id
    ORDER BY (w.product).id
)
SELECT (product).id AS id, inserted FROM written
"""

SELECT_DOCUMENT = "SELECT product_document(p)::text FROM products p WHERE p.id = $1"

SELECT_DOCUMENTS_PAGE = """
SELECT product_document(p)::text AS document, p.id
FROM products p WHERE p.id > $1 ORDER BY p.id LIMIT $2
"""


def _latest_per_id(
    items: Sequence[tuple[TransformedProduct, Source | None]],
) -> dict[str, tuple[TransformedProduct, Source | None]]:
    """One record per id (a statement may not touch a row twice): the newest wins."""

    def rank(item: tuple[TransformedProduct, Source | None]) -> tuple[Any, int]:
        product, source = item
        return (product["availability"]["timestamp"], source.offset if source else -1)

    latest: dict[str, tuple[TransformedProduct, Source | None]] = {}
    for item in items:
        key = item[0]["id"]
        if key not in latest or rank(item) > rank(latest[key]):
            latest[key] = item
    return latest


async def upsert_products(
    conn: Connection,
    items: Sequence[tuple[TransformedProduct, Source | None]],
    topic: str,
    traceparents: Mapping[str, str] | None = None,
) -> dict[str, Outcome]:
    """Persist a batch and enqueue its events; returns the outcome of each distinct id.

    ``traceparents`` gives the trace of each product id, kept with its event. Run it inside
    a transaction: products and outbox commit together or not at all.
    """
    latest = _latest_per_id(items)
    columns: list[list[Any]] = [[] for _ in range(11)]
    for product, source in latest.values():
        row = (
            product["id"],
            product["name"],
            product["description"],
            product["pricing"]["amount"],
            product["pricing"]["currency"],
            product["availability"]["quantity"],
            product["availability"]["timestamp"],
            product["category"],
            source.topic if source else None,
            source.partition if source else None,
            source.offset if source else None,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    traces = [(traceparents or {}).get(product_id) for product_id in latest]
    written = await conn.fetch(UPSERT_PRODUCTS, *columns, topic, traces)
    outcomes = dict.fromkeys(latest, Outcome.UNCHANGED)
    for record in written:
        outcomes[record["id"]] = Outcome.CREATED if record["inserted"] else Outcome.UPDATED
    return outcomes


async def product_document(conn: Connection, product_id: str) -> str | None:
    """The persisted record of a product as JSON text, or None."""
    document: str | None = await conn.fetchval(SELECT_DOCUMENT, product_id)
    return document


async def product_documents_page(conn: Connection, after: str, limit: int) -> list[tuple[str, str]]:
    """A page of persisted records in id order, after the given id: (id, JSON text)."""
    rows = await conn.fetch(SELECT_DOCUMENTS_PAGE, after, limit)
    return [(row["id"], row["document"]) for row in rows]


# --- outbox -----------------------------------------------------------------

# The oldest events of the given relay slots. A row's slot comes from the number of slots
# read in this same statement, so every claim uses the current partitioning.
SELECT_OUTBOX_BATCH = """
SELECT o.id, o.topic, o.key, o.payload::text AS payload, o.traceparent,
       extract(epoch FROM o.source_timestamp)::float8 AS source_timestamp
FROM outbox o, outbox_relay_config c
WHERE outbox_slot(o.key, c.slots) = ANY($2::integer[])
ORDER BY o.id LIMIT $1
"""
DELETE_OUTBOX = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"


async def outbox_batch(
    conn: Connection, limit: int, slots: Collection[int]
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(SELECT_OUTBOX_BATCH, limit, list(slots))
    return rows


async def delete_outbox(conn: Connection, ids: Sequence[int]) -> None:
    await conn.execute(DELETE_OUTBOX, list(ids))


OUTBOX_BACKLOG = """
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_age
FROM outbox
"""


async def outbox_backlog(conn: Connection) -> tuple[int, float]:
    """Rows still to publish, and the age of the oldest one in seconds (0 when none)."""
    row = await conn.fetchrow(OUTBOX_BACKLOG)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return row["backlog"], row["oldest_age"]


# --- relay slots (services/api/relay_slots.py) ------------------------------------------

# The number of slots, the relays alive (holders of a member lock) and the slots any relay
# holds, from the advisory locks of this database.
SELECT_RELAY_VIEW = """
WITH locks AS (
    SELECT l.classid::bigint AS space, l.objid::bigint AS number
    FROM pg_locks l JOIN pg_database d ON d.oid = l.database
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND d.datname = current_database()
)
SELECT (SELECT slots FROM outbox_relay_config) AS slots,
       (SELECT count(*) FROM locks WHERE space = $1) AS members,
       ARRAY(SELECT number FROM locks WHERE space = $2)::integer[] AS taken
"""


@dataclass(frozen=True)
class RelayView:
    slots: int
    members: int
    taken: list[int]


async def relay_view(conn: Connection, member_space: int, slot_space: int) -> RelayView:
    row = await conn.fetchrow(SELECT_RELAY_VIEW, member_space, slot_space)
    assert row is not None
    return RelayView(row["slots"], row["members"], list(row["taken"]))


async def try_lock_shared(conn: Connection, key: int) -> bool:
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_lock_shared($1::bigint)", key)
    return locked


async def lock_pair(conn: Connection, space: int, number: int) -> None:
    await conn.execute("SELECT pg_advisory_lock($1::integer, $2::integer)", space, number)


async def try_lock_pair(conn: Connection, space: int, number: int) -> bool:
    locked: bool = await conn.fetchval(
        "SELECT pg_try_advisory_lock($1::integer, $2::integer)", space, number
    )
    return locked


async def unlock_pair(conn: Connection, space: int, number: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1::integer, $2::integer)", space, number)
