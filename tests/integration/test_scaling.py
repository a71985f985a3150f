"""Several instances of each service: one consumer group, outbox relays sharing slots."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, unused_port
from aiokafka import ConsumerRecord
from pytest_aiohttp import AiohttpClient

from services.api.app import create_app as create_api
from services.api.config import ApiConfig
from services.api.keys import METRICS, RELAY
from services.common.config import KafkaConfig
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.config import SchedulerConfig

from ..helpers import (
    TopicReader,
    auth,
    encode,
    events_by_product,
    eventually,
    manual_record,
    produce,
    product_count,
    relay_locks,
    unique,
)

Client = TestClient[web.Request, web.Application]


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


def relay_slots(client: Client) -> frozenset[int]:
    return client.app[RELAY].slots


def batch_body(ids: list[str], update: int) -> dict[str, Any]:
    """Update ``update`` of every product in ``ids``: newer offset, different quantity."""
    return {
        "items": [
            {
                "product": {
                    "id": product_id,
                    "name": f"Nome {update}",
                    "description": "Descrição",
                    "pricing": {"amount": 1.5, "currency": "BRL"},
                    "availability": {"quantity": update, "timestamp": "2024-06-12T12:00:00.000Z"},
                    "category": "Categoria",
                },
                "source": {"topic": "t", "partition": 0, "offset": update},
            }
            for product_id in ids
        ]
    }


def assert_each_product_in_order(records: list[ConsumerRecord[bytes, bytes]], updates: int) -> None:
    """Once duplicates are dropped by event-id, each product's events come in id order and
    carry its updates 0, 1, 2, ... in turn."""
    for key, events in events_by_product(records).items():
        assert [q for _, q in events] == list(range(updates)), f"{key!r}: {events}"
        assert [e for e, _ in events] == sorted(e for e, _ in events), f"{key!r}: {events}"


async def test_replicas_share_the_relay_slots_and_the_survivor_takes_them_all(
    api: Client, api_config: ApiConfig, aiohttp_client: AiohttpClient
) -> None:
    second = await aiohttp_client(create_api(api_config))

    async def shared() -> bool:
        first_slots, second_slots = relay_slots(api), relay_slots(second)
        return len(first_slots) == len(second_slots) == 8 and not first_slots & second_slots

    await eventually(shared, within=30, what="two replicas holding 8 of the 16 slots each")
    locks = await relay_locks(api_config.database_url)
    assert sorted(map(frozenset, locks.values()), key=min) == sorted(
        [relay_slots(api), relay_slots(second)], key=min
    )

    await api.close()  # its session ends, and its slot locks with it

    async def survivor_holds_all() -> bool:
        return relay_slots(second) == frozenset(range(16))

    # Within seconds: the survivor rebalances every second.
    await eventually(survivor_holds_all, within=10, what="the survivor taking all 16 slots")
    assert list((await relay_locks(api_config.database_url)).values()) == [list(range(16))]


async def test_two_relays_publish_at_once_and_keep_each_products_order_across_a_change_of_k(
    api: Client, api_config: ApiConfig, kafka: KafkaConfig, aiohttp_client: AiohttpClient
) -> None:
    second = await aiohttp_client(create_api(api_config))
    replicas = [api, second]

    async def both_relaying() -> bool:
        return all(len(relay_slots(client)) == 8 for client in replicas)

    await eventually(both_relaying, within=30, what="both replicas relaying")
    ids = [unique("o") for _ in range(100)]
    updates = 20
    for update in range(updates):
        if update == updates // 2:
            # The documented operation, mid-stream: the relays rebalance over 5 slots.
            conn = await asyncpg.connect(api_config.database_url)
            try:
                await conn.execute("UPDATE outbox_relay_config SET slots = 5")
            finally:
                await conn.close()
        client = replicas[update % 2]
        response = await client.post(
            "/produto/scheduler/batch", json=batch_body(ids, update), headers=auth()
        )
        assert response.status == 200, await response.text()

    async with TopicReader(kafka.topic_persistidos) as persisted:
        records = await persisted.read_until(
            lambda records: (
                len({dict(r.headers)["event-id"] for r in records}) >= len(ids) * updates
            ),
            within=60,
            what=f"{len(ids) * updates} events on produtos-persistidos",
        )
    assert_each_product_in_order(records, updates)
    published = [
        client.app[METRICS].sample("fluxo_api_outbox_published_total") for client in replicas
    ]
    assert all(published), f"events published per replica: {published}"

    async def rebalanced() -> bool:
        held = [relay_slots(client) for client in replicas]
        return sorted(map(len, held)) == [2, 3] and held[0] | held[1] == frozenset(range(5))

    await eventually(rebalanced, within=10, what="the two relays sharing the 5 slots")


async def test_a_scheduler_given_several_api_urls_persists_through_the_one_that_answers(
    api: Client,
    scheduler_config: SchedulerConfig,
    kafka: KafkaConfig,
    api_config: ApiConfig,
    aiohttp_client: AiohttpClient,
) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    config = replace(scheduler_config, api_url=f"{dead},{scheduler_config.api_url}")
    await aiohttp_client(create_scheduler(config))
    records = [manual_record(unique("f"), stockQuantity=n) for n in range(300)]
    await produce(kafka.topic_cadastro, [(r["productId"].encode(), encode(r)) for r in records])

    await eventually(
        lambda: _at_least(api_config.database_url, 300),
        within=30,
        what="all 300 records persisted through the live API",
    )
