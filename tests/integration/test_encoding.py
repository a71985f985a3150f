"""One encoding of the persisted record: the same bytes in every answer and in the event."""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web
from aiohttp.test_utils import TestClient

from services.common import jsoncodec
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


async def test_each_event_of_a_batch_is_the_document_read_back(
    api: Client, kafka: KafkaConfig
) -> None:
    # Amounts and instants written in every way the contract accepts: each event carries
    # the bytes GET reads back from the stored row, whatever the record's spelling.
    spellings = [
        ("0", "1970-01-01T00:00:00Z"),
        ("0.01", "2024-06-12T14:00:00.123+02:00"),
        ("100.50", "2024-06-12T09:00:00.5-03:00"),
        ("1E+2", "2024-06-12T12:00:00.000Z"),
        ("999999999999.99", "2024-02-29T23:59:59.999+00:00"),
        ("12.3", "2024-06-12T12:00:00.07+05:30"),
    ]
    run = unique("b")
    items = []
    for n, (amount, timestamp) in enumerate(spellings):
        record = transformed_record(f"{run}-{n}", timestamp, name=f"Pão nº {n} ✓")
        record["pricing"]["amount"] = Decimal(amount)
        items.append({"product": record})
    body = jsoncodec.dumps({"items": items})

    posted = await api.post(
        "/produto/scheduler/batch",
        data=body,
        headers={**auth(), "Content-Type": "application/json"},
    )
    async with TopicReader(kafka.topic_persistidos) as persisted:
        events = await persisted.read(len(spellings))
    read_back = {}
    for n in range(len(spellings)):
        answer = await api.get(f"/produtos/{run}-{n}", headers=auth())
        read_back[f"{run}-{n}"] = await answer.read()

    assert posted.status == 200
    assert {event.key.decode(): event.value for event in events if event.key} == read_back
