"""Documented bounds, at the edges: what the documents call valid is accepted, the rest is
answered 422 naming the field, and an accepted timestamp reads back as the same instant."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from ..helpers import auth, manual_record, transformed_record, unique

Client = TestClient[web.Request, web.Application]


async def dry_run(scheduler: Client, timestamp: str) -> ClientResponse:
    """The scheduler's dry-run transform of the example record at ``timestamp``."""
    return await scheduler.post(
        "/produto/transform",
        params={"timestamp": timestamp},
        json=manual_record("12369"),
        headers=auth(),
    )


async def fields_of(response: Any) -> Any:
    assert response.status == 422, await response.text()
    return (await response.json())["error"]["fields"]


@pytest.mark.parametrize(
    ("sent", "read_back"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("2024-06-12T14:00:00.123+02:00", "2024-06-12T12:00:00.123Z"),
        ("2024-06-12T12:00:00.5Z", "2024-06-12T12:00:00.500Z"),
    ],
)
async def test_an_accepted_timestamp_reads_back_as_the_same_instant(
    api: Client, sent: str, read_back: str
) -> None:
    product_id = unique("ts")
    record = transformed_record(product_id, availability={"quantity": 1, "timestamp": sent})

    assert (await api.post("/produto/scheduler", json=record, headers=auth())).status == 201
    stored = await (await api.get(f"/produtos/{product_id}", headers=auth())).json()

    assert stored["availability"]["timestamp"] == read_back


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"]
)
async def test_a_timestamp_out_of_the_documented_range_is_refused(
    api: Client, timestamp: str
) -> None:
    record = transformed_record(unique("ts"), availability={"quantity": 1, "timestamp": timestamp})

    response = await api.post("/produto/scheduler", json=record, headers=auth())

    assert "timestamp" in (await fields_of(response))["availability"]


async def test_the_documented_largest_price_is_stored(api: Client) -> None:
    product_id = unique("price")
    record = transformed_record(product_id, pricing={"amount": 999999999999.99, "currency": "BRL"})

    assert (await api.post("/produto/scheduler", json=record, headers=auth())).status == 201
    stored = await (await api.get(f"/produtos/{product_id}", headers=auth())).text()

    assert '"amount"' in stored and "999999999999.99" in stored


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": "100"}, "price"),
        ({"price": 1000000000000}, "price"),
        ({"productId": "   "}, "productId"),
        ({"currency": "BRL\n"}, "currency"),
    ],
)
async def test_a_manual_record_with_a_bad_field_is_refused_naming_it(
    api: Client, changes: dict[str, Any], field: str
) -> None:
    record = manual_record(unique("bad"), **changes)

    response = await api.post("/produto/manual", json=record, headers=auth())

    assert set(await fields_of(response)) == {field}


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "after=%00"])
async def test_a_list_query_out_of_its_documented_bounds_is_refused(
    api: Client, query: str
) -> None:
    response = await api.get(f"/produtos?{query}", headers=auth())

    assert set(await fields_of(response)) == {query.split("=")[0]}


@pytest.mark.parametrize("query", ["limit=1", "limit=1000", f"after={'z' * 64}"])
async def test_a_list_query_at_its_documented_bounds_is_answered(api: Client, query: str) -> None:
    assert (await api.get(f"/produtos?{query}", headers=auth())).status == 200


@pytest.mark.parametrize("product_id", ["%00", "x" * 65])
async def test_an_id_no_product_can_have_is_not_found(api: Client, product_id: str) -> None:
    assert (await api.get(f"/produtos/{product_id}", headers=auth())).status == 404


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("2024-06-12T09:00:00.25-03:00", "2024-06-12T12:00:00.250Z"),
    ],
)
async def test_the_dry_run_transform_formats_the_given_timestamp(
    scheduler: Client, timestamp: str, expected: str
) -> None:
    response = await dry_run(scheduler, timestamp)

    assert response.status == 200, await response.text()
    assert (await response.json())["availability"]["timestamp"] == expected


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00Z", "2024-06-12T12:00:00", "9999-12-31T23:59:59Z"]
)
async def test_the_dry_run_transform_refuses_a_timestamp_out_of_range(
    scheduler: Client, timestamp: str
) -> None:
    response = await dry_run(scheduler, timestamp)

    assert set(await fields_of(response)) == {"timestamp"}


@pytest.mark.parametrize(
    "body",
    [
        {"timestamp": "1969-12-31T23:59:59Z"},
        {"offsets": {"99": 0}},
        {"offsets": {"01": 0}},
        {"offsets": {"0": 2**63}},
        {"offsets": {"0": -1}},
        {"timestamp": "2024-06-12T12:00:00Z", "offsets": {"0": 0}},
    ],
)
async def test_a_replay_outside_the_documented_bounds_is_refused(
    scheduler: Client, body: dict[str, Any]
) -> None:
    response = await scheduler.post("/consumer/replay", json=body, headers=auth())

    assert response.status == 422, await response.text()
