"""The whole flow on the real broker and database: entry topic → scheduler → API →
products → produtos-persistidos."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.api.keys import METRICS
from services.common import jsoncodec
from services.common.config import KafkaConfig
from services.common.transform import format_timestamp, kafka_timestamp

from ..helpers import TopicReader, auth, encode, eventually, manual_record, produce, unique

END_TO_END_COUNT = "fluxo_end_to_end_latency_seconds_count"

Client = TestClient[web.Request, web.Application]


def expected_output(record: dict[str, Any], timestamp_ms: int) -> dict[str, Any]:
    return {
        "id": record["productId"],
        "name": record["productName"],
        "description": record["productDescription"],
        "pricing": {"amount": record["price"], "currency": record["currency"]},
        "availability": {
            "quantity": record["stockQuantity"],
            "timestamp": format_timestamp(kafka_timestamp(timestamp_ms)),
        },
        "category": record["category"],
    }


async def stored_row(database: str, product_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database)
    try:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT * FROM products WHERE id = $1", product_id
        )
        return row
    finally:
        await conn.close()


async def test_manual_post_ends_in_products_and_on_produtos_persistidos(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    record = manual_record(
        unique("p"),
        productName="Açúcar mascavo — orgânico",
        productDescription="Pacote de 1 kg; produção artesanal em Pernambuco. ✓",
        price=1234.56,
        stockQuantity=7,
        category="Mercearia & Doces",
    )

    response = await api.post("/produto/manual", json=record, headers=auth())

    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert accepted["topic"] == kafka.topic_cadastro
    assert accepted["record"] == record
    async with TopicReader(kafka.topic_cadastro) as entry:
        source = (await entry.read(1))[0]
    assert (source.partition, source.offset) == (accepted["partition"], accepted["offset"])
    assert source.key == record["productId"].encode()
    expected = expected_output(record, source.timestamp)

    async with TopicReader(kafka.topic_persistidos) as persisted:
        published = (await persisted.read(1))[0]
    assert published.key == record["productId"].encode()
    assert jsoncodec.loads(published.value) == expected
    assert dict(published.headers)["event-id"].isdigit()
    # The schema's version travels with the media type (docs/topics.md).
    assert dict(published.headers)["content-type"] == b"application/json; version=1"

    row = await stored_row(api_config.database_url, record["productId"])
    assert row is not None
    assert row["name"] == record["productName"]
    assert row["description"] == record["productDescription"]
    assert str(row["price_amount"]) == "1234.56"
    assert row["price_currency"] == "BRL"
    assert row["stock_quantity"] == 7
    assert row["availability_timestamp"] == kafka_timestamp(source.timestamp)
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (
        kafka.topic_cadastro,
        source.partition,
        source.offset,
    )

    response = await api.get(f"/produtos/{record['productId']}", headers=auth())
    assert response.status == 200
    assert await response.json() == expected


async def test_record_produced_straight_to_kafka_goes_the_same_way(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    records = [manual_record(unique("k"), price=9.99, stockQuantity=n) for n in range(5)]
    observed = api.app[METRICS].sample(END_TO_END_COUNT)

    await produce(kafka.topic_cadastro, [(r["productId"].encode(), encode(r)) for r in records])

    async with TopicReader(kafka.topic_cadastro) as entry:
        sources = {r.key: r for r in await entry.read(5)}
    async with TopicReader(kafka.topic_persistidos) as persisted:
        published = await persisted.read(5)
    by_key = {r.key: jsoncodec.loads(r.value) for r in published}
    for record in records:
        key = record["productId"].encode()
        assert by_key[key] == expected_output(record, sources[key].timestamp)
        row = await stored_row(api_config.database_url, record["productId"])
        assert row is not None
        assert row["stock_quantity"] == record["stockQuantity"]

    async def latencies_observed() -> bool:
        return api.app[METRICS].sample(END_TO_END_COUNT) >= observed + 5

    # Each event of a record from Kafka carries its source timestamp to the relay.
    await eventually(latencies_observed, within=5, what="5 end-to-end latencies observed")


async def test_missing_or_wrong_token_is_refused_and_changes_nothing(
    api: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    record = manual_record(unique("p"))
    transformed = expected_output(record, 1_718_193_600_000)
    for headers in ({}, auth("wrong-token"), {"Authorization": "Basic dGVzdA=="}):
        for path, body in (("/produto/manual", record), ("/produto/scheduler", transformed)):
            response = await api.post(path, json=body, headers=headers)
            assert response.status == 401, path
            error = (await response.json())["error"]
            assert error["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await api.get("/produtos", headers=headers)).status == 401

    assert await stored_row(api_config.database_url, record["productId"]) is None
    async with TopicReader(kafka.topic_cadastro) as entry:
        await entry.nothing_more(within=1)


async def test_invalid_record_names_every_bad_field_and_nothing_is_written(
    api: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    record = manual_record(
        "",
        price=-1,
        currency="real",
        stockQuantity=2.5,
        productName=None,
    )
    del record["category"]

    response = await api.post("/produto/manual", json=record, headers=auth())

    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert set(error["fields"]) == {
        "productId",
        "productName",
        "price",
        "currency",
        "stockQuantity",
        "category",
    }
    transformed = {"id": "x", "pricing": {"amount": "abc", "currency": "BRL"}}
    response = await api.post("/produto/scheduler", json=transformed, headers=auth())
    assert response.status == 422
    fields = (await response.json())["error"]["fields"]
    assert set(fields) == {"name", "description", "pricing", "availability", "category"}
    assert set(fields["pricing"]) == {"amount"}

    async with TopicReader(kafka.topic_cadastro) as entry:
        await entry.nothing_more(within=1)
    conn = await asyncpg.connect(api_config.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM products") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        await conn.close()


async def test_same_transformed_record_twice_leaves_one_row_and_one_event(
    api: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    record = manual_record(unique("p"))
    transformed = expected_output(record, 1_718_193_600_000)
    observed = api.app[METRICS].sample(END_TO_END_COUNT)

    first = await api.post("/produto/scheduler", json=transformed, headers=auth())
    second = await api.post("/produto/scheduler", json=transformed, headers=auth())

    assert first.status == 201
    assert (await first.json()) == {"status": "created", "product": transformed}
    assert second.status == 200
    assert (await second.json()) == {"status": "unchanged", "product": transformed}
    conn = await asyncpg.connect(api_config.database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM products WHERE id = $1", record["productId"]
        )
    finally:
        await conn.close()
    assert count == 1
    async with TopicReader(kafka.topic_persistidos) as persisted:
        await persisted.read(1)
        await persisted.nothing_more(within=1)
    # Not from Kafka: no source timestamp, so no end-to-end latency.
    assert api.app[METRICS].sample(END_TO_END_COUNT) == observed


async def test_both_services_serve_swagger_listing_every_endpoint(
    api: Client, scheduler: Client
) -> None:
    expected = {
        api: {
            "/produto/manual",
            "/produto/scheduler",
            "/produto/scheduler/batch",
            "/produtos",
            "/produtos/{id}",
            "/health",
            "/ready",
        },
        scheduler: {
            "/health",
            "/ready",
            "/status",
            "/status/flow",
            "/consumer/pause",
            "/consumer/resume",
            "/consumer/replay",
            "/produto/transform",
        },
    }
    for client, paths in expected.items():
        ui = await client.get("/docs")
        assert ui.status == 200
        assert "swagger-ui" in (await ui.text()).lower()
        spec = await client.get("/docs/swagger.json")
        assert spec.status == 200
        documented = (await spec.json())["paths"]
        assert paths <= set(documented), paths - set(documented)
        for path, operations in documented.items():
            for method, operation in operations.items():
                assert operation.get("summary"), f"{method} {path} has no summary"


async def test_products_can_be_listed_page_by_page(api: Client) -> None:
    ids = sorted(unique("p") for _ in range(5))
    for product_id in ids:
        body = expected_output(manual_record(product_id), 1_718_193_600_000)
        assert (await api.post("/produto/scheduler", json=body, headers=auth())).status == 201

    first = await (await api.get("/produtos?limit=3", headers=auth())).json()
    second = await (
        await api.get(f"/produtos?limit=3&after={first['next']}", headers=auth())
    ).json()

    assert [p["id"] for p in first["items"]] == ids[:3]
    assert [p["id"] for p in second["items"]] == ids[3:]
    assert second["next"] is None
    assert (await api.get("/produtos/nope", headers=auth())).status == 404
