"""Which record of a product wins, on the real broker: within one partition of one topic
the later offset, whatever the timestamps say; across partitions (or over HTTP) the later
timestamp; a timestamp more than the tolerance ahead is refused; a topic deleted and created
again is not compared by its old offsets. One case per row, each with its outcome."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config import KafkaConfig
from services.common.kafka import ensure_topics, partition_for
from services.common.transform import format_timestamp

from ..helpers import (
    BOOTSTRAP,
    Placed,
    TopicReader,
    auth,
    caught_up,
    encode,
    eventually,
    manual_record,
    produce_placed,
    transformed_record,
    unique,
)

Client = TestClient[web.Request, web.Application]
SECOND = 1000


@dataclass
class Setup:
    api: Client
    scheduler: Client
    kafka: KafkaConfig
    database: str

    def record(
        self,
        product_id: str,
        version: str,
        timestamp_ms: int,
        partition: int | None = None,
        *,
        null_key: bool = False,
    ) -> Placed:
        """Version ``version`` of a product (its name), keyed by its id unless told."""
        value = encode(manual_record(product_id, productName=version))
        return Placed(None if null_key else product_id.encode(), value, partition, timestamp_ms)

    async def send(self, *records: Placed) -> None:
        await produce_placed(self.kafka.topic_cadastro, records)

    async def stored(self, product_id: str) -> asyncpg.Record | None:
        conn = await asyncpg.connect(self.database)
        try:
            return await conn.fetchrow("SELECT * FROM products WHERE id = $1", product_id)
        finally:
            await conn.close()

    async def stored_name(self, product_id: str, name: str, *, within: float = 20) -> None:
        async def named() -> bool:
            row = await self.stored(product_id)
            return row is not None and row["name"] == name

        await eventually(named, within=within, what=f"product {product_id} stored as {name!r}")

    async def caught_up(self) -> None:
        await caught_up(self.scheduler, self.kafka.partitions)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- the cases ------------------------------------------------------------------------


async def later_offset_stamped_earlier(s: Setup) -> None:
    p, t = unique("corrected"), now_ms()
    await s.send(s.record(p, "v1", t), s.record(p, "v2 (clock corrected)", t - SECOND))

    await s.stored_name(p, "v2 (clock corrected)")


async def stamped_within_the_tolerance(s: Setup) -> None:
    p, t = unique("within"), now_ms()
    await s.send(s.record(p, "30 s ahead", t + 30 * SECOND))
    await s.stored_name(p, "30 s ahead")
    # The next record of the partition wins though stamped earlier.
    await s.send(s.record(p, "now", now_ms()))
    await s.stored_name(p, "now")


async def stamped_beyond_the_tolerance(s: Setup) -> None:
    p, t = unique("beyond"), now_ms()
    async with TopicReader(s.kafka.topic_dlq) as dlq:
        await s.send(s.record(p, "59 min ahead", t + 59 * 60 * SECOND))
        [dead] = await dlq.read(1)
    headers = dict(dead.headers)
    assert headers["dlq-stage"] == b"validate"
    reason = headers["dlq-reason"].decode()
    ahead = format_timestamp(datetime.fromtimestamp((t + 59 * 60 * SECOND) / 1000, UTC))
    assert f"timestamp {ahead} is " in reason
    assert "beyond the tolerance of 60 s (FUTURE_TIMESTAMP_TOLERANCE_SECONDS)" in reason
    # Nothing blocks the next update of the product.
    await s.send(s.record(p, "now", now_ms()))
    await s.stored_name(p, "now")


async def two_partitions_later_timestamp_first(s: Setup) -> None:
    p, t = unique("two-first"), now_ms() - 10 * SECOND
    await s.send(s.record(p, "p1 later", t + SECOND, partition=1))
    await s.stored_name(p, "p1 later")
    await s.send(s.record(p, "p0 earlier", t, partition=0))
    await s.caught_up()

    await s.stored_name(p, "p1 later", within=0)


async def two_partitions_later_timestamp_last(s: Setup) -> None:
    p, t = unique("two-last"), now_ms() - 10 * SECOND
    await s.send(s.record(p, "p1 earlier", t, partition=1))
    await s.stored_name(p, "p1 earlier")
    await s.send(s.record(p, "p0 later", t + SECOND, partition=0))

    await s.stored_name(p, "p0 later")


async def null_key(s: Setup) -> None:
    p, t = unique("null-key"), now_ms() - 10 * SECOND
    home = partition_for(p.encode(), list(range(s.kafka.partitions)))
    other, third = [n for n in range(s.kafka.partitions) if n != home][:2]
    await s.send(s.record(p, "keyed", t))
    await s.stored_name(p, "keyed")
    await s.send(s.record(p, "null key, later", t + SECOND, partition=other, null_key=True))
    await s.stored_name(p, "null key, later")
    await s.send(s.record(p, "null key, earlier", t - SECOND, partition=third, null_key=True))
    await s.caught_up()

    await s.stored_name(p, "null key, later", within=0)


async def replay_of_older_offsets(s: Setup) -> None:
    p, t = unique("replay"), now_ms()
    await s.send(s.record(p, "v1", t, partition=0), s.record(p, "v2", t - SECOND, partition=0))
    await s.stored_name(p, "v2")
    await s.caught_up()
    before = await s.stored(p)

    replayed = await s.scheduler.post(
        "/consumer/replay", json={"offsets": {"0": 0}}, headers=auth()
    )
    assert replayed.status == 200, await replayed.text()
    await s.caught_up()

    assert await s.stored(p) == before  # updated_at included: nothing was written


async def batch_of_several_versions(s: Setup) -> None:
    p, q, t = unique("batch"), unique("batch"), now_ms() - 10 * SECOND
    assert (await s.scheduler.post("/consumer/pause", headers=auth())).status == 200
    await s.send(
        # One partition, clocks all over the place: the last offset wins.
        *(s.record(p, f"v{n}", t + skew * SECOND) for n, skew in enumerate([3, 1, 4, 0, 2])),
        # Two partitions: the latest timestamp wins, wherever it lies in the batch.
        s.record(q, "p0 latest", t + 5 * SECOND, partition=0),
        s.record(q, "p1 older", t + 4 * SECOND, partition=1),
        s.record(q, "p2 oldest", t, partition=2),
    )
    assert (await s.scheduler.post("/consumer/resume", headers=auth())).status == 200

    await s.stored_name(p, "v4")
    await s.stored_name(q, "p0 latest")


async def topic_deleted_and_created_again(s: Setup) -> None:
    p, t = unique("recreated"), now_ms() - 10 * SECOND
    await s.send(*(s.record(p, f"old v{n}", t + n, partition=0) for n in range(5)))
    await s.stored_name(p, "old v4")
    old = await s.stored(p)
    assert old is not None and old["source_offset"] == 4 and old["source_incarnation"]

    topic = s.kafka.topic_cadastro
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics([topic])

        async def gone() -> bool:
            return topic not in await admin.list_topics()

        await eventually(gone, within=30, what=f"topic {topic} deleted")

        async def released() -> bool:  # the scheduler noticed: it holds no partition
            status = await (await s.scheduler.get("/status", headers=auth())).json()
            return not status["partitions"]

        await eventually(released, within=30, what="the scheduler releasing the deleted topic")
    finally:
        await admin.close()
    await ensure_topics(s.kafka, [topic])
    # Offset 0 of the new topic, stamped later than the old records.
    await s.send(s.record(p, "new v0", now_ms(), partition=0))

    await s.stored_name(p, "new v0", within=60)
    new = await s.stored(p)
    assert new is not None and new["source_offset"] == 0
    assert new["source_incarnation"] not in (None, old["source_incarnation"])


CASES: dict[str, Callable[[Setup], Awaitable[None]]] = {
    "a later offset stamped earlier": later_offset_stamped_earlier,
    "stamped within the tolerance": stamped_within_the_tolerance,
    "stamped beyond the tolerance": stamped_beyond_the_tolerance,
    "two partitions, later timestamp first": two_partitions_later_timestamp_first,
    "two partitions, later timestamp last": two_partitions_later_timestamp_last,
    "a null key": null_key,
    "a replay of older offsets": replay_of_older_offsets,
    "a batch holding several versions of one id": batch_of_several_versions,
    "a topic deleted and created again": topic_deleted_and_created_again,
}


@pytest.mark.parametrize("case", list(CASES))
async def test_the_winner_of_each_case_is_the_rules(
    case: str, api: Client, scheduler: Client, kafka: KafkaConfig, database: str
) -> None:
    await CASES[case](Setup(api, scheduler, kafka, database))


async def test_an_http_write_23_hours_ahead_is_422_and_blocks_nothing(api: Client) -> None:
    product_id = unique("http-ahead")
    ahead = datetime.now(UTC) + timedelta(hours=23)

    refused = await api.post(
        "/produto/scheduler",
        json=transformed_record(product_id, format_timestamp(ahead)),
        headers=auth(),
    )
    assert refused.status == 422
    fields: Any = (await refused.json())["error"]["fields"]
    [message] = fields["availability"]["timestamp"]
    assert "beyond the tolerance of 60 s (FUTURE_TIMESTAMP_TOLERANCE_SECONDS)" in message

    current = transformed_record(
        product_id,
        format_timestamp(datetime.now(UTC)),
        pricing={"amount": 200.0, "currency": "BRL"},
    )
    created = await api.post("/produto/scheduler", json=current, headers=auth())
    assert created.status == 201
    stored = await (await api.get(f"/produtos/{product_id}", headers=auth())).json()
    assert stored["pricing"]["amount"] == 200.0
