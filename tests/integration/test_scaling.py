"""Several instances of each service: one consumer group, one active outbox relay."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from services.api.app import create_app as create_api
from services.api.config import ApiConfig
from services.common.config import KafkaConfig
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.config import SchedulerConfig

from ..helpers import TopicReader, auth, encode, eventually, manual_record, produce, unique

Client = TestClient[web.Request, web.Application]


async def product_count(database: str) -> int:
    conn = await asyncpg.connect(database)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM products")
        return count
    finally:
        await conn.close()


async def test_a_second_scheduler_joining_mid_stream_shares_the_partitions_and_loses_nothing(
    api: Client,
    scheduler: Client,
    scheduler_config: SchedulerConfig,
    kafka: KafkaConfig,
    api_config: ApiConfig,
    aiohttp_client: AiohttpClient,
) -> None:
    records = [manual_record(unique("s"), stockQuantity=n) for n in range(2000)]
    encoded = [(r["productId"].encode(), encode(r)) for r in records]
    await produce(kafka.topic_cadastro, encoded[:1000])
    await eventually(
        lambda: _at_least(api_config.database_url, 100),
        within=30,
        what="the first scheduler persisting records",
    )

    second = await aiohttp_client(create_scheduler(scheduler_config))
    await produce(kafka.topic_cadastro, encoded[1000:])

    async def both_assigned() -> bool:
        statuses = [
            await (await client.get("/status", headers=auth())).json()
            for client in (scheduler, second)
        ]
        return all(status["partitions"] for status in statuses)

    await eventually(both_assigned, within=30, what="both schedulers holding partitions")
    await eventually(
        lambda: _at_least(api_config.database_url, 2000),
        within=60,
        what="all 2,000 records persisted",
    )
    assert await product_count(api_config.database_url) == 2000
    async with TopicReader(kafka.topic_persistidos) as persisted:
        published = await persisted.read(2000, within=30)
    assert {r.key for r in published} == {key for key, _ in encoded}


async def _at_least(database: str, count: int) -> bool:
    return await product_count(database) >= count


async def test_one_relay_publishes_and_another_replica_takes_over_when_it_stops(
    api: Client, api_config: ApiConfig, kafka: KafkaConfig, aiohttp_client: AiohttpClient
) -> None:
    second = await aiohttp_client(create_api(api_config))

    async def one_active() -> bool:
        checks = [
            (await (await client.get("/ready")).json())["checks"]["outbox_relay"]
            for client in (api, second)
        ]
        return checks == [True, False]

    await eventually(one_active, within=30, what="exactly the first replica relaying")

    await api.close()  # the first replica shuts down; its relay lock is released

    async def second_active() -> bool:
        ready = await (await second.get("/ready")).json()
        return bool(ready["checks"]["outbox_relay"])

    await eventually(second_active, within=30, what="the second replica taking over the relay")
    product_id = unique("p")
    body = {
        "id": product_id,
        "name": "Nome",
        "description": "Descrição",
        "pricing": {"amount": 1.5, "currency": "BRL"},
        "availability": {"quantity": 1, "timestamp": "2024-06-12T12:00:00.000Z"},
        "category": "Categoria",
    }
    assert (await second.post("/produto/scheduler", json=body, headers=auth())).status == 201
    async with TopicReader(kafka.topic_persistidos) as persisted:
        published = await persisted.read(1)
    assert published[0].key == product_id.encode()
