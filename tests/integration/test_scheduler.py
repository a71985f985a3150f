"""The scheduler against the real broker and a real API: dead letters and operator controls."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.common import jsoncodec
from services.common.config import KafkaConfig

from ..helpers import TopicReader, auth, encode, eventually, manual_record, produce, unique

Client = TestClient[web.Request, web.Application]


async def persisted_ids(database: str) -> set[str]:
    conn = await asyncpg.connect(database)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM products")}
    finally:
        await conn.close()


async def test_poison_records_are_dead_lettered_with_the_reason_and_the_rest_flows(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    good = [manual_record(unique("g")) for _ in range(4)]
    poison: list[tuple[bytes | None, bytes | None, str]] = [
        (b"bytes", b"\xff\xfe\x00garbage", "decode"),
        (b"json", b'{"productId": "x",', "decode"),
        (b"twice", encode(manual_record("d1", price=-5))[:-1] + b',"price":1}', "decode"),
        (b"types", encode(manual_record("t1", price="cheap", stockQuantity="many")), "validate"),
        (b"missing", b'{"productId": "m1"}', "validate"),
        (b"negative", encode(manual_record("n1", price=-10)), "validate"),
        (b"empty", b"", "decode"),
        (b"huge", encode(manual_record("h1", productDescription="x" * 1_000_000)), "validate"),
    ]
    records: list[tuple[bytes | None, bytes | None]] = [
        (r["productId"].encode(), encode(r)) for r in good[:2]
    ]
    records += [(key, value) for key, value, _ in poison]
    records += [(r["productId"].encode(), encode(r)) for r in good[2:]]

    await produce(kafka.topic_cadastro, records)

    async with TopicReader(kafka.topic_dlq) as dlq:
        dead = await dlq.read(len(poison), within=30)
        await dlq.nothing_more(within=0.5)
    by_key = {record.key: record for record in dead}
    for key, value, stage in poison:
        record = by_key[key]
        assert record.value == (value or None) or record.value == value
        headers = dict(record.headers)
        assert headers["dlq-stage"] == stage.encode()
        assert headers["dlq-reason"]
        assert headers["dlq-source-topic"] == kafka.topic_cadastro.encode()
        assert headers["dlq-source-offset"].isdigit()
        assert headers["dlq-source-partition"].isdigit()
        assert headers["dlq-source-timestamp"].isdigit()
    assert b"price" in dict(by_key[b"negative"].headers)["dlq-reason"]
    assert b"UTF-8" in dict(by_key[b"bytes"].headers)["dlq-reason"]
    assert dict(by_key[b"twice"].headers)["dlq-reason"] == (
        b"value is not JSON: the key 'price' appears twice in one object"
    )

    await eventually(
        lambda: _has(api_config.database_url, {r["productId"] for r in good}),
        within=30,
        what="every valid record persisted",
    )
    assert await persisted_ids(api_config.database_url) == {r["productId"] for r in good}
    status = await (await scheduler.get("/status", headers=auth())).json()
    assert status["counters"]["dead_lettered"] == len(poison)

    async def committed_everything() -> bool:
        status = await (await scheduler.get("/status", headers=auth())).json()
        return all(p["lag"] == 0 for p in status["partitions"] if p["end"])

    # Offsets are committed within SCHEDULER_COMMIT_INTERVAL (1 s) of the acknowledgement.
    await eventually(committed_everything, within=10, what="every offset committed")


async def _has(database: str, ids: set[str]) -> bool:
    return ids <= await persisted_ids(database)


async def test_pause_holds_records_until_resume(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    paused = await scheduler.post("/consumer/pause", headers=auth())
    assert paused.status == 200
    assert (await paused.json())["state"] == "paused"
    record = manual_record(unique("p"))

    await produce(kafka.topic_cadastro, [(record["productId"].encode(), encode(record))])

    async def lag_visible() -> bool:
        status = await (await scheduler.get("/status", headers=auth())).json()
        return sum(p["lag"] or 0 for p in status["partitions"]) == 1

    await eventually(lag_visible, within=15, what="the paused record showing as lag")
    assert await persisted_ids(api_config.database_url) == set()

    resumed = await scheduler.post("/consumer/resume", headers=auth())
    assert (await resumed.json())["state"] == "running"
    await eventually(
        lambda: _has(api_config.database_url, {record["productId"]}),
        within=15,
        what="the record persisted after resume",
    )


async def test_replay_from_the_beginning_persists_nothing_twice(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    records = [manual_record(unique("r")) for _ in range(6)]
    await produce(kafka.topic_cadastro, [(r["productId"].encode(), encode(r)) for r in records])
    ids = {r["productId"] for r in records}
    await eventually(lambda: _has(api_config.database_url, ids), within=30, what="first pass")

    response = await scheduler.post(
        "/consumer/replay", json={"offsets": {"0": 0, "1": 0, "2": 0}}, headers=auth()
    )

    assert response.status == 200
    assert (await response.json())["positions"] == {"0": 0, "1": 0, "2": 0}

    async def replayed() -> bool:
        metrics = await (await api.get("/metrics")).text()
        return 'fluxo_api_persisted_records_total{outcome="unchanged"} 6.0\n' in metrics

    await eventually(replayed, within=30, what="the 6 records replayed as unchanged")
    assert await persisted_ids(api_config.database_url) == ids
    async with TopicReader(kafka.topic_persistidos) as persisted:
        await persisted.read(6)
        await persisted.nothing_more(within=0.5)


async def test_replay_needs_exactly_one_of_timestamp_or_offsets(scheduler: Client) -> None:
    for body in ({}, {"timestamp": "2024-06-12T12:00:00Z", "offsets": {"0": 1}}):
        response = await scheduler.post("/consumer/replay", json=body, headers=auth())
        assert response.status == 422
    response = await scheduler.post(
        "/consumer/replay", json={"timestamp": "2024-06-12T12:00:00Z"}, headers=auth()
    )
    assert response.status == 200


async def test_dry_run_transforms_without_side_effects(
    scheduler: Client, kafka: KafkaConfig
) -> None:
    record = manual_record("12369")
    response = await scheduler.post(
        "/produto/transform?timestamp=2024-06-12T12:00:00Z", json=record, headers=auth()
    )
    assert response.status == 200
    assert await response.json() == {
        "id": "12369",
        "name": "Nome do Produto",
        "description": "Descrição do Produto",
        "pricing": {"amount": 100.0, "currency": "BRL"},
        "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00.000Z"},
        "category": "Categoria do Produto",
    }
    bad = await scheduler.post("/produto/transform", json={"productId": 1}, headers=auth())
    assert bad.status == 422
    assert "productId" in (await bad.json())["error"]["fields"]
    naive = await scheduler.post(
        "/produto/transform?timestamp=2024-06-12T12:00:00", json=record, headers=auth()
    )
    assert naive.status == 422
    async with TopicReader(kafka.topic_cadastro) as entry:
        await entry.nothing_more(within=0.5)


async def test_operator_endpoints_need_the_token(scheduler: Client) -> None:
    for method, path in (
        ("GET", "/status"),
        ("POST", "/consumer/pause"),
        ("POST", "/consumer/resume"),
        ("POST", "/consumer/replay"),
        ("POST", "/produto/transform"),
    ):
        response = await scheduler.request(method, path, headers=auth("wrong"))
        assert response.status == 401, path
    assert (await scheduler.get("/metrics")).status == 200
    assert jsoncodec.loads(await (await scheduler.get("/health")).read()) == {"status": "ok"}
