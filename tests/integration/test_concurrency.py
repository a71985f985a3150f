"""Concurrent writers of the same products: no deadlock reaches a client, every row ends right,
and duplicates within one batch are each answered for what happened to them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import SQL_DIR, ApiConfig
from services.api.database import TRANSACTION_ATTEMPTS, Connection, Database
from services.common.errors import Unavailable

from ..conftest import FAST_RETRY
from ..helpers import auth, transformed_record, unique

Client = TestClient[web.Request, web.Application]

PRODUCTS = 1000
ROUNDS = 30


@pytest.fixture
def api_config(api_config: ApiConfig) -> ApiConfig:
    """Room for batches of a thousand products."""
    return dataclasses.replace(api_config, max_body_bytes=8 * 1024 * 1024)


def batch(ids: list[str], *, round_: int, quantity: int, offset: int) -> dict[str, Any]:
    timestamp = f"2024-06-12T12:{round_ // 60:02d}:{round_ % 60:02d}.000Z"
    return {
        "items": [
            {
                "product": transformed_record(product_id, timestamp, name=f"round {round_}")
                | {"availability": {"quantity": quantity, "timestamp": timestamp}},
                "source": {"topic": "t", "partition": 0, "offset": offset},
            }
            for product_id in ids
        ]
    }


async def test_two_batches_of_the_same_products_in_opposite_orders_never_fail(
    api: Client, api_config: ApiConfig
) -> None:
    ids = [unique("c") for _ in range(PRODUCTS)]
    statuses: Counter[int] = Counter()
    conn = await asyncpg.connect(api_config.database_url)
    try:
        for round_ in range(ROUNDS):
            # Same products, opposite orders; the second batch is the newer source record.
            older = batch(ids, round_=round_, quantity=2 * round_, offset=2 * round_)
            newer = batch(ids[::-1], round_=round_, quantity=2 * round_ + 1, offset=2 * round_ + 1)
            answers = await asyncio.gather(
                api.post("/produto/scheduler/batch", json=older, headers=auth()),
                api.post("/produto/scheduler/batch", json=newer, headers=auth()),
            )
            for answer in answers:
                statuses[answer.status] += 1
                assert answer.status == 200, await answer.text()
            rows = await conn.fetch(
                "SELECT stock_quantity, source_offset, name FROM products WHERE id = ANY($1)",
                ids,
            )
            assert len(rows) == PRODUCTS
            wrong = [
                tuple(r)
                for r in rows
                if tuple(r) != (2 * round_ + 1, 2 * round_ + 1, f"round {round_}")
            ]
            assert wrong == [], f"round {round_}: {len(wrong)} rows not from the newer batch"
    finally:
        await conn.close()
    assert statuses == {200: 2 * ROUNDS}


async def test_duplicates_in_a_batch_are_answered_by_what_became_of_each(
    api: Client, api_config: ApiConfig
) -> None:
    product_id = unique("d")
    items = [
        {
            "product": transformed_record(product_id, "2024-06-12T12:00:02.000Z", name="first"),
            "source": {"topic": "t", "partition": 0, "offset": 5},
        },
        {
            # The later offset of the same partition wins, though stamped earlier.
            "product": transformed_record(product_id, "2024-06-12T12:00:01.000Z", name="last"),
            "source": {"topic": "t", "partition": 0, "offset": 9},
        },
        {
            "product": transformed_record(product_id, "2024-06-12T12:00:02.000Z", name="replay"),
            "source": {"topic": "t", "partition": 0, "offset": 4},
        },
    ]

    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())

    assert response.status == 200
    assert [r["status"] for r in (await response.json())["results"]] == [
        "unchanged",
        "created",
        "unchanged",
    ]
    stored = await api.get(f"/produtos/{product_id}", headers=auth())
    assert (await stored.json())["name"] == "last"


async def test_a_deadlock_is_retried_and_both_transactions_commit(database: str) -> None:
    db = Database(database, 4, SQL_DIR, FAST_RETRY)
    await db.open()
    try:
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO products (id, name, description, price_amount, price_currency,"
                " stock_quantity, availability_timestamp, category)"
                " SELECT id, 'n', 'd', 1, 'BRL', 0, now(), 'c' FROM unnest($1::text[]) AS id",
                ["a", "b"],
            )
        attempts: Counter[str] = Counter()
        holding = {"a": asyncio.Event(), "b": asyncio.Event()}

        async def lock_both(first: str, second: str) -> None:
            async def work(conn: Connection) -> None:
                attempts[first] += 1
                await conn.execute(BUMP, first)
                if attempts[first] == 1:  # each holds its first row when it asks for the other
                    holding[first].set()
                    await holding[second].wait()
                await conn.execute(BUMP, second)

            await db.in_transaction(work, what=f"locking {first} then {second}")

        await asyncio.gather(lock_both("a", "b"), lock_both("b", "a"))

        assert sorted(attempts.values()) == [1, 2]  # PostgreSQL rolled one back; it ran again
        async with db.connection() as conn:
            quantities = await conn.fetch("SELECT stock_quantity FROM products ORDER BY id")
        assert [row[0] for row in quantities] == [2, 2]
    finally:
        await db.close()


async def test_a_transaction_that_keeps_conflicting_is_answered_unavailable(database: str) -> None:
    db = Database(database, 2, SQL_DIR, FAST_RETRY)
    await db.open()
    calls = 0

    async def conflicting(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.SerializationError("could not serialize access")

    try:
        with pytest.raises(Unavailable):
            await db.in_transaction(conflicting, what="conflicting for ever")
    finally:
        await db.close()
    assert calls == TRANSACTION_ATTEMPTS


BUMP = "UPDATE products SET stock_quantity = stock_quantity + 1 WHERE id = $1"
