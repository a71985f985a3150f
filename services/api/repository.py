"""Every SQL statement on products and outbox. The schema itself lives in ``sql/``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from ..common import jsoncodec
from ..common.contracts import TransformedProduct
from ..common.ordering import Position, Source, supersedes
from ..common.transform import format_timestamp
from .database import Connection


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


# What the persisted record is made of.
DOCUMENT_COLUMNS = (
    "p.id, p.name, p.description, p.price_amount, p.price_currency, p.stock_quantity, "
    "p.availability_timestamp, p.category"
)

# Upsert the batch and enqueue its events in one statement, atomic by itself (no BEGIN and
# COMMIT round trips). A row changes only for a write that supersedes it (the rule of
# services/common/ordering.py, as product_write_supersedes in sql/006_write_order.sql) with
# different content, so a replay never regresses a row and a duplicate changes nothing.
# Rows are written (and so locked) in id order: two statements writing the same products
# wait for each other instead of deadlocking. Each row inserted or changed gets its event
# ($13, the API's encoding of the record), in id order, with the
# source record's timestamp when it came from Kafka (where the end-to-end latency starts);
# the statement returns those rows.
UPSERT_PRODUCTS = """
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::integer[],
        $7::timestamptz[], $8::text[], $9::text[], $10::integer[], $11::bigint[],
        $12::text[], $13::text[], $14::text[]
    ) AS t(id, name, description, price_amount, price_currency, stock_quantity,
           availability_timestamp, category, source_topic, source_partition, source_offset,
           source_incarnation, payload, traceparent)
),
written AS (
    INSERT INTO products AS p (
        id, name, description, price_amount, price_currency, stock_quantity,
        availability_timestamp, category, source_topic, source_partition, source_offset,
        source_incarnation)
    SELECT id, name, description, price_amount, price_currency, stock_quantity,
           availability_timestamp, category, source_topic, source_partition, source_offset,
           source_incarnation
    FROM input ORDER BY id
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
        source_incarnation = EXCLUDED.source_incarnation,
        updated_at = now()
    WHERE product_write_supersedes(
              EXCLUDED.availability_timestamp, EXCLUDED.source_topic, EXCLUDED.source_partition,
              EXCLUDED.source_offset, EXCLUDED.source_incarnation,
              p.availability_timestamp, p.source_topic, p.source_partition, p.source_offset,
              p.source_incarnation)
      AND (EXCLUDED.name, EXCLUDED.description, EXCLUDED.price_amount,
           EXCLUDED.price_currency, EXCLUDED.stock_quantity,
           EXCLUDED.availability_timestamp, EXCLUDED.category)
          IS DISTINCT FROM
          (p.name, p.description, p.price_amount, p.price_currency, p.stock_quantity,
           p.availability_timestamp, p.category)
    RETURNING p.id, p.xmax = 0 AS inserted
),
events AS (
    INSERT INTO outbox (topic, key, payload, traceparent, source_timestamp)
    SELECT $15, i.id, i.payload::json, i.traceparent,
           CASE WHEN i.source_topic IS NOT NULL THEN i.availability_timestamp END
    FROM written w JOIN input i ON i.id = w.id
    ORDER BY i.id
)
SELECT id, inserted FROM written
"""

SELECT_PRODUCT = f"SELECT {DOCUMENT_COLUMNS} FROM products p WHERE p.id = $1"
SELECT_PRODUCTS_PAGE = (
    f"SELECT {DOCUMENT_COLUMNS} FROM products p WHERE p.id > $1 ORDER BY p.id LIMIT $2"
)


def encode_product(row: Mapping[str, Any] | asyncpg.Record) -> bytes:
    """The persisted record of a products row: the one encoding of it that GET answers,
    list pages, POST answers and the events on produtos-persistidos all carry."""
    return _document(
        row["id"],
        row["name"],
        row["description"],
        row["price_amount"],
        row["price_currency"],
        row["stock_quantity"],
        row["availability_timestamp"],
        row["category"],
    )


def _columns(product: TransformedProduct) -> tuple[Any, ...]:
    """A record's values in the order of the products columns (and of ``_document``)."""
    return (
        product["id"],
        product["name"],
        product["description"],
        product["pricing"]["amount"],
        product["pricing"]["currency"],
        product["availability"]["quantity"],
        product["availability"]["timestamp"],
        product["category"],
    )


def _document(
    product_id: str,
    name: str,
    description: str,
    amount: Decimal,
    currency: str,
    quantity: int,
    timestamp: datetime,
    category: str,
) -> bytes:
    return jsoncodec.dumps(
        {
            "id": product_id,
            "name": name,
            "description": description,
            # float() as jsoncodec's encoder of a Decimal does, without orjson's call back.
            "pricing": {"amount": float(amount), "currency": currency},
            "availability": {"quantity": quantity, "timestamp": format_timestamp(timestamp)},
            "category": category,
        }
    )


Item = tuple[TransformedProduct, Source | None]


def newest_per_id(items: Sequence[Item]) -> dict[str, int]:
    """For each id, the index of the item that wins when the items arrive in their order
    (``supersedes``): a statement may write a row only once, and the others lose to it."""

    def position(index: int) -> Position:
        product, source = items[index]
        return Position(product["availability"]["timestamp"], source)

    newest: dict[str, int] = {}
    for index, (product, _) in enumerate(items):
        key = product["id"]
        current = newest.get(key)
        # Positions are built only for an id seen before: most batches repeat none.
        if current is None or supersedes(position(index), position(current)):
            newest[key] = index
    return newest


async def upsert_products(
    conn: Connection,
    items: Sequence[Item],
    topic: str,
    traceparents: Sequence[str | None] | None = None,
) -> list[Outcome]:
    """Persist a batch and enqueue its events; returns the outcome of each item, in order.

    Of several items for one id, the newest is written; the others are answered
    ``unchanged`` (they lost to it). ``traceparents`` gives each item's trace, kept with its
    event. One statement: products and outbox commit together or not at all.
    """
    newest = newest_per_id(items)
    columns: list[list[Any]] = [[] for _ in range(14)]
    for product_id in sorted(newest):
        index = newest[product_id]
        product, source = items[index]
        stored = _columns(product)
        values = (
            *stored,
            source.topic if source else None,
            source.partition if source else None,
            source.offset if source else None,
            source.incarnation if source else None,
            # The event is encode_product of the row, without reading it back: the columns
            # hold the record's values exactly (cents fit NUMERIC(14, 2), milliseconds fit
            # timestamptz), and the encoding writes the amount as a number, the instant in UTC.
            _document(*stored).decode(),
            traceparents[index] if traceparents else None,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    written: list[asyncpg.Record] = await conn.fetch(UPSERT_PRODUCTS, *columns, topic)
    outcomes = [Outcome.UNCHANGED] * len(items)
    for row in written:
        outcomes[newest[row["id"]]] = Outcome.CREATED if row["inserted"] else Outcome.UPDATED
    return outcomes


async def read_product(conn: Connection, product_id: str) -> bytes | None:
    """The persisted record of a product (``encode_product``), or None."""
    row = await conn.fetchrow(SELECT_PRODUCT, product_id)
    return encode_product(row) if row is not None else None


async def read_products_page(conn: Connection, after: str, limit: int) -> list[tuple[str, bytes]]:
    """A page of persisted records in id order, after the given id: (id, document)."""
    rows = await conn.fetch(SELECT_PRODUCTS_PAGE, after, limit)
    return [(row["id"], encode_product(row)) for row in rows]


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
