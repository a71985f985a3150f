"""One encoding of the persisted record: the same bytes in every answer and in the event."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from services.common.config import KafkaConfig

from ..helpers import TopicReader, auth, transformed_record, unique

Client = TestClient[web.Request, web.Application]


async def test_answers_pages_and_the_event_carry_the_same_bytes(
    api: Client, kafka: KafkaConfig
) -> None:
    product_id = unique("e")
    record = transformed_record(
        product_id,
        "2024-06-12T12:00:00.5Z",
        name="Café — “especial” ✓",
        pricing={"amount": 100, "currency": "BRL"},
    )
    document = (
        f'{{"id":"{product_id}","name":"Café — “especial” ✓",'
        '"description":"Descrição do Produto",'
        '"pricing":{"amount":100.0,"currency":"BRL"},'
        '"availability":{"quantity":50,"timestamp":"2024-06-12T12:00:00.500Z"},'
        '"category":"Categoria do Produto"}'
    ).encode()

    posted = await api.post("/produto/scheduler", json=record, headers=auth())
    got = await api.get(f"/produtos/{product_id}", headers=auth())
    page = await api.get("/produtos", params={"after": product_id[:-1]}, headers=auth())
    async with TopicReader(kafka.topic_persistidos) as persisted:
        event = (await persisted.read(1))[0]

    assert posted.status == 201
    assert await posted.read() == b'{"status":"created","product":' + document + b"}"
    assert await got.read() == document
    assert await page.read() == b'{"items":[' + document + b'],"next":null}'
    assert event.value == document
