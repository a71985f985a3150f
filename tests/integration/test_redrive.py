"""Re-driving a dead letter: validated as the consumer validates, sent back with its
original key, headers and timestamp, ordered by its original place, and exactly once per
attempt however many schedulers are asked at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from pytest_aiohttp import AiohttpClient

from services.api.config import ApiConfig
from services.common import jsoncodec
from services.common.config import KafkaConfig
from services.common.kafka import create_producer, partition_for
from services.common.transform import format_timestamp
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.config import SchedulerConfig

from ..helpers import (
    BOOTSTRAP,
    Placed,
    TopicReader,
    auth,
    encode,
    eventually,
    fetchval,
    manual_record,
    produce,
    produce_placed,
    unique,
    wait_ready,
)
from ..reliability.kafka_admin import topic_setting

Client = TestClient[web.Request, web.Application]


def redrives(records: list[ConsumerRecord[bytes, bytes]]) -> list[ConsumerRecord[bytes, bytes]]:
    return [record for record in records if "redrive-of" in dict(record.headers)]


async def test_a_corrected_dead_letter_is_redriven_once_with_its_original_place_and_time(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    product = unique("p")
    bad = manual_record(product, price=-1)
    await produce(kafka.topic_cadastro, [(product.encode(), encode(bad))])
    async with TopicReader(kafka.topic_dlq) as dlq:
        [dead] = await dlq.read(1)
    async with TopicReader(kafka.topic_cadastro) as source:
        [original] = await source.read(1)
    path = f"/dead-letters/{dead.partition}/{dead.offset}/redrive"

    still_bad = await scheduler.post(
        path, json={"value": manual_record(product, currency="reais")}, headers=auth()
    )
    as_it_is = await scheduler.post(path, headers=auth())
    fixed = await scheduler.post(
        path, json={"value": manual_record(product, price=12.5)}, headers=auth()
    )
    again = await scheduler.post(
        path, json={"value": manual_record(product, price=12.5)}, headers=auth()
    )
    unauthorized = await scheduler.post(path)

    assert still_bad.status == 422
    assert "currency" in (await still_bad.json())["error"]["fields"]["value"]
    assert as_it_is.status == 422, await as_it_is.text()
    assert fixed.status == 200, await fixed.text()
    assert again.status == 409  # attempt 1 is taken; the record has not come back since
    assert unauthorized.status == 401
    answer = await fixed.json()
    entry = f"{kafka.topic_cadastro}/{original.partition}/{original.offset}"
    assert (answer["entry"], answer["attempt"], answer["corrected"]) == (entry, 1, True)

    async with TopicReader(kafka.topic_cadastro) as source:
        records = await source.read(2)
        await source.nothing_more(within=0.5)
    [redriven] = redrives(records)
    assert (redriven.partition, redriven.offset) == (answer["partition"], answer["offset"])
    assert redriven.key == product.encode()
    assert redriven.timestamp == original.timestamp
    assert dict(redriven.headers) == {
        "redrive-of": entry.encode(),
        "redrive-attempt": b"1",
        "redrive-corrected": b"true",
        "traceparent": dict(dead.headers)["traceparent"],
    }

    async def persisted_from_its_original_place() -> tuple[Any, ...] | None:
        row = await fetchval(
            api_config.database_url,
            "SELECT (price_amount, source_partition, source_offset, availability_timestamp)"
            " FROM products WHERE id = $1",
            product,
        )
        return tuple(row) if row else None

    price, partition, offset, timestamp = await eventually(
        persisted_from_its_original_place, within=30, what="the re-driven record persisted"
    )
    assert (float(price), partition, offset) == (12.5, original.partition, original.offset)
    assert int(timestamp.timestamp() * 1000) == original.timestamp
    metrics = await (await scheduler.get("/metrics")).text()
    assert 'fluxo_scheduler_redrives_total{outcome="produced"} 1.0' in metrics
    assert 'fluxo_scheduler_redrives_total{outcome="refused"} 2.0' in metrics
    assert 'fluxo_scheduler_redrives_total{outcome="already"} 1.0' in metrics


async def test_a_position_without_a_dead_letter_is_404(scheduler: Client) -> None:
    response = await scheduler.post("/dead-letters/0/5/redrive", headers=auth())

    assert response.status == 404, await response.text()


async def test_a_position_of_thousands_of_digits_is_422(scheduler: Client) -> None:
    response = await scheduler.post(f"/dead-letters/{'9' * 5000}/0/redrive", headers=auth())

    assert response.status == 422, await response.text()
    assert set((await response.json())["error"]["fields"]) == {"partition"}


async def test_the_redrive_state_topic_is_created_compacted(
    scheduler: Client, kafka: KafkaConfig
) -> None:
    policy = await topic_setting(BOOTSTRAP, kafka.topic_dlq_redrives, "cleanup.policy")

    assert policy == "compact"


async def test_two_schedulers_asked_at_once_redrive_each_entry_exactly_once(
    api: Client,
    scheduler: Client,
    scheduler_config: SchedulerConfig,
    kafka: KafkaConfig,
    aiohttp_client: AiohttpClient,
) -> None:
    other = await aiohttp_client(create_scheduler(scheduler_config))
    await wait_ready(other, "second scheduler")
    products = [unique("p") for _ in range(20)]
    await produce(
        kafka.topic_cadastro,
        [(p.encode(), encode(manual_record(p, stockQuantity=-1))) for p in products],
    )
    async with TopicReader(kafka.topic_dlq) as dlq:
        dead = await dlq.read(len(products), within=30)

    async def both(partition: int, offset: int, product: str) -> list[int]:
        path = f"/dead-letters/{partition}/{offset}/redrive"
        body = {"value": manual_record(product)}
        answers = await asyncio.gather(
            scheduler.post(path, json=body, headers=auth()),
            other.post(path, json=body, headers=auth()),
        )
        return sorted(answer.status for answer in answers)

    statuses = await asyncio.gather(
        *(both(d.partition, d.offset, d.key.decode()) for d in dead if d.key)
    )

    assert statuses == [[200, 409]] * len(products)
    async with TopicReader(kafka.topic_cadastro) as source:
        records = await source.read(2 * len(products))
        await source.nothing_more(within=1)
    per_entry = Counter(
        (dict(r.headers)["redrive-of"], dict(r.headers)["redrive-attempt"])
        for r in redrives(records)
    )
    assert len(per_entry) == len(products)
    assert set(per_entry.values()) == {1}


async def test_a_redrive_older_than_the_products_row_leaves_the_row_as_it_is(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    product = unique("p")
    # The same key, so the same partition: the valid record comes later in it.
    await produce(
        kafka.topic_cadastro,
        [
            (product.encode(), encode(manual_record(product, stockQuantity=-5))),
            (product.encode(), encode(manual_record(product, stockQuantity=7))),
        ],
    )
    async with TopicReader(kafka.topic_dlq) as dlq:
        [dead] = await dlq.read(1)

    async def quantity() -> Any:
        return await fetchval(
            api_config.database_url, "SELECT stock_quantity FROM products WHERE id = $1", product
        )

    await eventually(quantity, within=30, what="the newer record persisted")

    response = await scheduler.post(
        f"/dead-letters/{dead.partition}/{dead.offset}/redrive",
        json={"value": manual_record(product, stockQuantity=1)},
        headers=auth(),
    )
    assert response.status == 200, await response.text()

    async def handed_over() -> bool:
        metrics = await (await scheduler.get("/metrics")).text()
        return "fluxo_scheduler_persisted_total 2.0" in metrics

    await eventually(handed_over, within=30, what="the re-driven record acknowledged by the API")
    assert await quantity() == 7
    metrics = await (await scheduler.get("/metrics")).text()
    assert 'fluxo_scheduler_redrives_total{outcome="stale"} 1.0' in metrics


async def test_an_attempt_whose_claimer_stalled_mid_transaction_is_taken_over_once(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    product = unique("p")
    await produce(
        kafka.topic_cadastro, [(product.encode(), encode(manual_record(product, price=-1)))]
    )
    async with TopicReader(kafka.topic_dlq) as dlq:
        [dead] = await dlq.read(1)
    async with TopicReader(kafka.topic_cadastro) as source:
        [original] = await source.read(1)
    entry = f"{kafka.topic_cadastro}/{original.partition}/{original.offset}"
    # Another scheduler claimed attempt 1 for five seconds, began its transaction, produced
    # its record and stalled before committing.
    stalled = create_producer(
        kafka, transactional_id=f"fluxo-redrive/{kafka.topic_dlq_redrives}/{entry}#1"
    )
    await stalled.start()
    now = datetime.now(UTC)
    claim = {
        "type": "claim",
        "entry": entry,
        "attempt": 1,
        "claim": "stalled",
        "at": format_timestamp(now),
        "expires": format_timestamp(now + timedelta(seconds=5)),
    }
    partitions = sorted(await stalled.partitions_for(kafka.topic_dlq_redrives))
    await produce_placed(
        kafka.topic_dlq_redrives,
        [
            Placed(
                f"{entry}#1#stalled".encode(),
                jsoncodec.dumps(claim),
                partition=partition_for(entry.encode(), partitions),
            )
        ],
    )
    await stalled.begin_transaction()
    await stalled.send_and_wait(
        kafka.topic_cadastro,
        encode(manual_record(product, price=1)),
        key=product.encode(),
        headers=[("redrive-of", entry.encode()), ("redrive-attempt", b"1")],
    )
    path = f"/dead-letters/{dead.partition}/{dead.offset}/redrive"
    body = {"value": manual_record(product, price=12.5)}

    held = await scheduler.post(path, json=body, headers=auth())

    assert held.status == 409, await held.text()
    assert "may be re-driven again after" in (await held.json())["error"]["message"]

    async def taken_over() -> dict[str, Any] | None:
        response = await scheduler.post(path, json=body, headers=auth())
        assert response.status in (200, 409), await response.text()
        return await response.json() if response.status == 200 else None

    answer = await eventually(taken_over, within=30, every=0.5, what="the expired claim taken over")
    with pytest.raises(KafkaError):  # fenced: its record never counts
        await stalled.commit_transaction()
    with contextlib.suppress(KafkaError):
        await stalled.stop()
    assert answer["attempt"] == 1
    async with TopicReader(kafka.topic_cadastro) as source:
        records = await source.read(2)
        await source.nothing_more(within=1)
    [redriven] = redrives(records)
    assert (redriven.partition, redriven.offset) == (answer["partition"], answer["offset"])
    assert jsoncodec.loads(redriven.value)["price"] == 12.5

    async def price() -> Any:
        return await fetchval(
            api_config.database_url, "SELECT price_amount FROM products WHERE id = $1", product
        )

    assert float(await eventually(price, within=30, what="the re-driven record persisted")) == 12.5
    again = await scheduler.post(path, json=body, headers=auth())
    assert again.status == 409
    assert [h["attempt"] for h in (await again.json())["error"]["fields"]["history"]] == [1]
