"""The pure parts of the repository: which of several items for one id is written, and the
one encoding of a persisted record."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.api.repository import encode_product, newest_per_id
from services.common.contracts import TransformedProduct, load_transformed
from services.common.ordering import Source

from ..helpers import transformed_record


def item(
    product_id: str, timestamp: str, offset: int | None, partition: int = 0
) -> tuple[TransformedProduct, Any]:
    product = load_transformed(transformed_record(product_id, timestamp))
    return product, Source("t", partition, offset, "id") if offset is not None else None


def test_the_winner_of_an_id_is_the_item_that_supersedes_the_others_in_arrival_order() -> None:
    items = [
        item("b", "2024-06-12T12:00:00Z", 1),
        item("a", "2024-06-12T12:00:05Z", 1),
        item("a", "2024-06-12T12:00:01Z", 9),  # "a": same partition, later offset
        item("b", "2024-06-12T12:00:00Z", 7, partition=1),  # "b": equal timestamp, later
        item("c", "2024-06-12T12:00:00Z", None),
        item("d", "2024-06-12T12:00:05Z", 3, partition=0),  # "d": the later timestamp
        item("d", "2024-06-12T12:00:01Z", 8, partition=1),
    ]

    assert newest_per_id(items) == {"a": 2, "b": 3, "c": 4, "d": 5}


def test_of_equal_items_the_first_stays() -> None:
    items = [item("a", "2024-06-12T12:00:00Z", 3), item("a", "2024-06-12T12:00:00Z", 3)]

    assert newest_per_id(items) == {"a": 0}


def test_a_persisted_record_is_compact_json_with_money_as_a_number() -> None:
    row = {
        "id": "12369",
        "name": "Pão de Açúcar",
        "description": "Descrição",
        "price_amount": Decimal("100.00"),
        "price_currency": "BRL",
        "stock_quantity": 50,
        "availability_timestamp": datetime(2024, 6, 12, 12, 0, 0, 500_000, tzinfo=UTC),
        "category": "Mercearia",
    }

    assert (
        encode_product(row)
        == (
            '{"id":"12369","name":"Pão de Açúcar","description":"Descrição",'
            '"pricing":{"amount":100.0,"currency":"BRL"},'
            '"availability":{"quantity":50,"timestamp":"2024-06-12T12:00:00.500Z"},'
            '"category":"Mercearia"}'
        ).encode()
    )
