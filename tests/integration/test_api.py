"""The API on its own: errors a client can cause, the batch form, and idempotent upserts."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.common import jsoncodec
from services.common.config import KafkaConfig

from ..helpers import TopicReader, auth, eventually, transformed_record, unique

Client = TestClient[web.Request, web.Application]


async def count_rows(database: str, table: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return count
    finally:
        await conn.close()


async def test_malformed_json_is_400_and_other_media_types_are_415(api: Client) -> None:
    response = await api.post(
        "/produto/manual",
        data=b'{"productId": ',
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"

    response = await api.post(
        "/produto/manual", data=b"productId=1", headers={**auth(), "Content-Type": "text/plain"}
    )
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_body_over_the_limit_is_413(api: Client, api_config: ApiConfig) -> None:
    huge = transformed_record("p", description="x" * (api_config.max_body_bytes + 1))
    response = await api.post("/produto/scheduler", json=huge, headers=auth())
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"


async def test_a_json_array_instead_of_a_record_is_422(api: Client) -> None:
    response = await api.post("/produto/scheduler", json=[1, 2], headers=auth())
    assert response.status == 422
    assert "_schema" in (await response.json())["error"]["fields"]


async def test_batch_persists_the_valid_items_and_names_the_invalid_ones(
    api: Client, api_config: ApiConfig, kafka: KafkaConfig
) -> None:
    good = [transformed_record(unique("b")) for _ in range(3)]
    bad = transformed_record(unique("b"), pricing={"amount": -5, "currency": "BRL"})
    items = [
        {"product": good[0], "source": {"topic": "t", "partition": 0, "offset": 1}},
        {"product": bad},
        {"product": good[1]},
        "not an object",
        {"product": good[2], "source": {"topic": "t", "partition": "x", "offset": 3}},
    ]

    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())

    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "created",
        "rejected",
        "rejected",
    ]
    assert results[1]["id"] == bad["id"]
    assert results[1]["error"]["fields"] == {
        "product": {
            "pricing": {
                "amount": [
                    "Must be greater than or equal to 0 and less than or equal to 999999999999.99."
                ]
            }
        }
    }
    assert set(results[4]["error"]["fields"]) == {"source"}
    assert await count_rows(api_config.database_url, "products") == 2
    async with TopicReader(kafka.topic_persistidos) as persisted:
        published = await persisted.read(2)
    assert {r.key for r in published} == {good[0]["id"].encode(), good[1]["id"].encode()}


async def test_empty_or_oversized_batches_are_refused(api: Client) -> None:
    bodies: list[Any] = [{"items": []}, {"items": [{}] * 5001}, {"records": []}, []]
    for body in bodies:
        response = await api.post("/produto/scheduler/batch", json=body, headers=auth())
        assert response.status == 422
        assert "items" in (await response.json())["error"]["fields"]


async def test_newer_record_updates_and_an_older_replay_never_regresses(
    api: Client, api_config: ApiConfig, kafka: KafkaConfig
) -> None:
    product_id = unique("p")
    old = transformed_record(product_id, "2024-06-12T12:00:00.000Z", name="Primeiro")
    new = transformed_record(product_id, "2024-06-12T12:00:05.000Z", name="Segundo")

    assert (await api.post("/produto/scheduler", json=old, headers=auth())).status == 201
    updated = await api.post("/produto/scheduler", json=new, headers=auth())
    replayed = await api.post("/produto/scheduler", json=old, headers=auth())

    assert updated.status == 200
    assert (await updated.json())["status"] == "updated"
    assert replayed.status == 200
    assert await replayed.json() == {"status": "unchanged", "product": new}
    stored = await api.get(f"/produtos/{product_id}", headers=auth())
    assert (await stored.json())["name"] == "Segundo"
    async with TopicReader(kafka.topic_persistidos) as persisted:
        events = await persisted.read(2)
        await persisted.nothing_more(within=1)
    assert [jsoncodec.loads(e.value)["name"] for e in events] == ["Primeiro", "Segundo"]
    assert int(dict(events[0].headers)["event-id"]) < int(dict(events[1].headers)["event-id"])


async def test_within_one_batch_the_newest_record_of_a_product_wins(api: Client) -> None:
    product_id = unique("p")
    items = [
        {
            "product": transformed_record(product_id, name="b"),
            "source": {"topic": "t", "partition": 0, "offset": 8},
        },
        {
            "product": transformed_record(product_id, name="a"),
            "source": {"topic": "t", "partition": 0, "offset": 7},
        },
    ]
    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())
    assert response.status == 200
    stored = await (await api.get(f"/produtos/{product_id}", headers=auth())).json()
    assert stored["name"] == "b"


async def test_money_is_stored_exactly(api: Client, api_config: ApiConfig) -> None:
    product_id = unique("p")
    body = transformed_record(product_id, pricing={"amount": 999999999999.99, "currency": "USD"})
    assert (await api.post("/produto/scheduler", json=body, headers=auth())).status == 201
    conn = await asyncpg.connect(api_config.database_url)
    try:
        amount = await conn.fetchval(
            "SELECT price_amount::text FROM products WHERE id = $1", product_id
        )
    finally:
        await conn.close()
    assert amount == "999999999999.99"
    stored = await (await api.get(f"/produtos/{product_id}", headers=auth())).json()
    assert stored["pricing"] == {"amount": 999999999999.99, "currency": "USD"}


async def test_probes_and_metrics_need_no_token(api: Client) -> None:
    assert (await api.get("/health")).status == 200
    everything = {"database": True, "kafka": True, "outbox_relay": True}

    async def all_checks_pass() -> bool:
        # The relay takes its lock a moment after the API is ready (it is not required).
        ready = await api.get("/ready")
        return ready.status == 200 and (await ready.json())["checks"] == everything

    await eventually(all_checks_pass, within=10, what="/ready with every check true")
    metrics = await api.get("/metrics")
    assert metrics.status == 200
    assert "fluxo_api_persisted_records_total" in await metrics.text()


async def test_a_record_the_database_refuses_is_rejected_alone_and_never_a_500(
    api: Client, api_config: ApiConfig
) -> None:
    # A rule of the database that validation does not know about stands for any such gap.
    conn = await asyncpg.connect(api_config.database_url)
    try:
        await conn.execute(
            "ALTER TABLE products ADD CONSTRAINT test_rule CHECK (name <> 'Proibido')"
        )
    finally:
        await conn.close()
    good = [transformed_record(unique("d")) for _ in range(2)]
    refused = transformed_record(unique("d"), name="Proibido")
    items = [{"product": good[0]}, {"product": refused}, {"product": good[1]}]

    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())

    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["status"] for r in results] == ["created", "rejected", "created"]
    assert "test_rule" in results[1]["error"]["message"]
    assert await count_rows(api_config.database_url, "products") == 2
    single = await api.post("/produto/scheduler", json=refused, headers=auth())
    assert single.status == 422


async def test_a_source_past_kafkas_bounds_is_named_not_refused_by_the_database(
    api: Client,
) -> None:
    items = [
        {"product": transformed_record(unique("s")), "source": source}
        for source in (
            {"topic": "t", "partition": 2**31, "offset": 1},
            {"topic": "t", "partition": 0, "offset": 2**63},
        )
    ]

    response = await api.post("/produto/scheduler/batch", json={"items": items}, headers=auth())

    results = (await response.json())["results"]
    assert [r["error"]["code"] for r in results] == ["validation_failed"] * 2
    assert [set(r["error"]["fields"]["source"]) for r in results] == [{"partition"}, {"offset"}]
