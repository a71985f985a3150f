"""The dead letters listed one entry per source record, newest first, filtered and paged;
a record refused again after a re-drive is the same entry with its attempt count, and a
replay does not dead-letter a record a second time."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.common.config import KafkaConfig

from ..helpers import (
    TopicReader,
    auth,
    encode,
    eventually,
    fetchval,
    manual_record,
    produce,
    unique,
)

Client = TestClient[web.Request, web.Application]


async def listed(scheduler: Client, **query: str) -> dict[str, Any]:
    response = await scheduler.get("/dead-letters", params=query, headers=auth())
    assert response.status == 200, await response.text()
    page: dict[str, Any] = await response.json()
    return page


async def test_dead_letters_are_listed_newest_first_filtered_and_paged(
    api: Client, scheduler: Client, kafka: KafkaConfig
) -> None:
    poison = [
        (b"bytes", b"\xff\xfe garbage"),
        (b"negative", encode(manual_record("n1", price=-10))),
        (b"json", b'{"productId": "x",'),
    ]
    for key, value in poison:  # one at a time, so that their order is known
        await produce(kafka.topic_cadastro, [(key, value)])
        async with TopicReader(kafka.topic_dlq) as dlq:
            await dlq.read(poison.index((key, value)) + 1)

    async def all_listed() -> dict[str, Any] | None:
        page = await listed(scheduler)
        return page if len(page["items"]) == 3 else None

    page = await eventually(all_listed, within=10, what="3 dead letters listed")

    assert [item["key"] for item in page["items"]] == ["json", "negative", "bytes"]
    garbage = page["items"][2]
    assert garbage["value_encoding"] == "base64" and garbage["stage"] == "decode"
    negative = page["items"][1]
    assert negative["value"] == encode(manual_record("n1", price=-10)).decode()
    assert negative["source"]["topic"] == kafka.topic_cadastro
    assert negative["trace_id"] and len(negative["positions"]) == 1
    assert {h["name"] for h in negative["dlq_headers"]} >= {"dlq-reason", "dlq-stage"}
    assert negative["redrives"] == [] and negative["attempt"] == 0

    assert [i["key"] for i in (await listed(scheduler, stage="decode"))["items"]] == [
        "json",
        "bytes",
    ]
    assert [i["key"] for i in (await listed(scheduler, reason="price"))["items"]] == ["negative"]
    assert [i["key"] for i in (await listed(scheduler, key="bytes"))["items"]] == ["bytes"]
    assert (await listed(scheduler, since="2099-01-01T00:00:00Z"))["items"] == []
    first = await listed(scheduler, limit="2")
    second = await listed(scheduler, limit="2", cursor=first["next"])
    assert [i["key"] for i in first["items"] + second["items"]] == ["json", "negative", "bytes"]
    assert second["next"] is None

    redrive = await scheduler.post(
        f"/dead-letters/{negative['positions'][0]['partition']}"
        f"/{negative['positions'][0]['offset']}/redrive",
        json={"value": manual_record("n1", price=10)},
        headers=auth(),
    )
    assert redrive.status == 200, await redrive.text()

    async def shown_as_redriven() -> list[Any] | None:
        items: list[Any] = (await listed(scheduler, redriven="true"))["items"]
        return items or None

    [redriven] = await eventually(shown_as_redriven, within=10, what="the re-drive listed")
    assert redriven["entry"] == negative["entry"]
    [outcome] = redriven["redrives"]
    assert outcome["corrected"] is True and outcome["attempt"] == 1
    assert TOKEN_NOT_SHOWN not in str(redriven)
    assert len((await listed(scheduler, redriven="false"))["items"]) == 2

    invalid = ({"limit": "501"}, {"limit": "9" * 5000}, {"cursor": "x"}, {"since": "yesterday"})
    for query in (*invalid, {"stage": "x"}):
        response = await scheduler.get("/dead-letters", params=query, headers=auth())
        assert response.status == 422, query
        assert set((await response.json())["error"]["fields"]) == set(query)


TOKEN_NOT_SHOWN = "test-token"


async def test_a_record_refused_again_after_a_redrive_is_the_same_entry_one_attempt_on(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    conn = await asyncpg.connect(api_config.database_url)
    try:
        await conn.execute("ALTER TABLE products ADD CONSTRAINT few CHECK (stock_quantity < 1000)")
        product = unique("p")
        await produce(
            kafka.topic_cadastro,
            [(product.encode(), encode(manual_record(product, stockQuantity=5000)))],
        )
        async with TopicReader(kafka.topic_dlq) as dlq:
            [first] = await dlq.read(1)
            assert dict(first.headers)["dlq-stage"] == b"api"
            redriven = await scheduler.post(
                f"/dead-letters/{first.partition}/{first.offset}/redrive", headers=auth()
            )
            assert redriven.status == 200, await redriven.text()
            [_, again] = await dlq.read(2)

        assert dict(again.headers)["redrive-attempt"] == b"1"

        async def entry() -> dict[str, Any] | None:
            items = (await listed(scheduler, key=product))["items"]
            return items[0] if items and len(items[0]["positions"]) == 2 else None

        listed_entry = await eventually(entry, within=10, what="both dead letters in one entry")
        assert listed_entry["attempt"] == 1
        assert [p["attempt"] for p in listed_entry["positions"]] == [0, 1]

        # Through either position: attempt 1 came back dead, so this is attempt 2.
        await conn.execute("ALTER TABLE products DROP CONSTRAINT few")
        response = await scheduler.post(
            f"/dead-letters/{first.partition}/{first.offset}/redrive", headers=auth()
        )
        assert response.status == 200, await response.text()
        assert (await response.json())["attempt"] == 2
        await eventually(
            lambda: fetchval(
                api_config.database_url,
                "SELECT stock_quantity FROM products WHERE id = $1",
                product,
            ),
            within=30,
            what="the record persisted once the constraint was dropped",
        )
    finally:
        await conn.close()


async def test_a_replay_does_not_dead_letter_a_record_a_second_time(
    api: Client, scheduler: Client, kafka: KafkaConfig
) -> None:
    await produce(kafka.topic_cadastro, [(b"bad", b"not json")])
    async with TopicReader(kafka.topic_dlq) as dlq:
        await dlq.read(1)

        async def indexed() -> bool:
            response = await scheduler.get("/dead-letters", headers=auth())
            return response.status == 200 and len((await response.json())["items"]) == 1

        await eventually(indexed, within=10, what="the dead letter indexed")
        replay = await scheduler.post(
            "/consumer/replay", json={"offsets": {"0": 0, "1": 0, "2": 0}}, headers=auth()
        )
        assert replay.status == 200, await replay.text()
        # A new poison record behind the replayed one: once it is dead-lettered, the
        # replayed one was handled.
        await produce(kafka.topic_cadastro, [(b"bad", b"still not json")])
        records = await dlq.read(2)
        await dlq.nothing_more(within=0.5)

    assert [r.value for r in records] == [b"not json", b"still not json"]
