"""examples/consumer.py, run as its users run it, against what the pipeline publishes."""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from examples.consumer import EventChecker
from services.common.config import KafkaConfig
from services.common.contracts import EVENT_CONTENT_TYPE
from services.scheduler.asyncapi import committed_config, document

from ..asyncapi_records import exact
from ..helpers import (
    BOOTSTRAP,
    ROOT,
    Placed,
    TopicReader,
    auth,
    manual_record,
    produce_placed,
    transformed_record,
    unique,
)

Client = TestClient[web.Request, web.Application]


async def test_the_example_consumer_keeps_each_event_once(
    api: Client, scheduler: Client, kafka: KafkaConfig
) -> None:
    run = unique("ex")
    for n in range(3):
        response = await api.post(
            "/produto/manual", json=manual_record(f"{run}-{n}"), headers=auth()
        )
        assert response.status == 202
    async with TopicReader(kafka.topic_persistidos) as reader:
        first = (await reader.read(3))[0]
    # At-least-once: an event published again keeps its event-id. A later event of the same
    # product lands after it on its partition, so a consumer that keeps it has read the copy.
    await produce_placed(
        first.topic, [Placed(first.key, first.value, first.partition, headers=first.headers)]
    )
    product = json.loads(first.value or b"")["id"]
    update = manual_record(product, stockQuantity=7)
    assert (await api.post("/produto/manual", json=update, headers=auth())).status == 202

    server: TestServer = scheduler.server  # type: ignore[assignment]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "consumer.py"),
        "--asyncapi",
        str(server.make_url("/asyncapi.json")),
        "--bootstrap-servers",
        BOOTSTRAP,
        "--group",
        unique("example"),
        "--stop-after",
        "4",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        raise AssertionError("the example consumer did not keep 4 events within 60 s") from None
    assert process.returncode == 0, err.decode()
    kept = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(event["product"]["id"] for event in kept) == sorted(
        [f"{run}-0", f"{run}-1", f"{run}-2", product]
    )
    assert len({event["event-id"] for event in kept}) == 4
    quantities = [
        e["product"]["availability"]["quantity"] for e in kept if e["product"]["id"] == product
    ]
    assert quantities == [50, 7]
    messages = err.decode()
    assert f"duplicate of event {dict(first.headers)['event-id'].decode()}" in messages, messages
    assert "kept 4 events" in messages


def test_the_example_consumer_skips_an_event_unlike_the_document() -> None:
    checker = EventChecker(exact(document(committed_config())))
    headers = {"event-id": "9", "content-type": EVENT_CONTENT_TYPE}
    assert checker.topic == "produtos-persistidos"
    assert checker.problems(headers, json.dumps(transformed_record("p")).encode()) == []
    wrong = transformed_record("p", pricing={"amount": "100", "currency": "BRL"})
    assert checker.problems(
        {**headers, "content-type": "application/json; version=2"}, json.dumps(wrong).encode()
    ) == [
        "header: 'application/json; version=1' was expected",
        "pricing/amount: '100' is not of type 'number'",
    ]
    assert checker.problems(headers, b"{") != []
