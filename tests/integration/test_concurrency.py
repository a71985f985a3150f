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

from services.api.config import ApiConfig

from ..helpers import auth, unique
from .test_api import transformed

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
                "product": transformed(product_id, timestamp, name=f"round {round_}")
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
            "product": transformed(product_id, "2024-06-12T12:00:02.000Z", name="newest"),
            "source": {"topic": "t", "partition": 0, "offset": 5},
        },
        {
            "product": transformed(product_id, "2024-06-12T12:00:01.000Z", name="older"),
            "source": {"topic": "t", "partition": 0, "offset": 9},
        },
        {
            "product": transformed(product_id, "2024-06-12T12:00:02.000Z", name="same time"),
            "source": {"topic": "t", "partition": 0, "offset": 4},
        },
    ]

    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())

    assert response.status == 200
    assert [r["status"] for r in (await response.json())["results"]] == [
        "created",
        "unchanged",
        "unchanged",
    ]
    stored = await api.get(f"/produtos/{product_id}", headers=auth())
    assert (await stored.json())["name"] == "newest"
