"""Records aiokafka cannot parse or send as they are: each is dead-lettered, the rest flows."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.common.config import KafkaConfig

from ..helpers import (
    BOOTSTRAP,
    ROOT,
    TopicReader,
    auth,
    encode,
    eventually,
    manual_record,
    persisted,
    produce,
    unique,
)

Client = TestClient[web.Request, web.Application]

# Produces, one batch each: a valid record, a record whose header name is not UTF-8 (which
# Kafka clients that write raw bytes can send, and aiokafka cannot read), a valid record.
# aiokafka's pure-Python record builder is the one that takes such a name.
PRODUCE = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

class RawName(str):
    def encode(self, *args, **kwargs):
        return b"\\xff\\xfe-not-utf8"

async def main(bootstrap, topic, first, second):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, first.encode(), key=b"k", partition=0)
        await producer.send_and_wait(
            topic, first.encode(), key=b"k", partition=0, headers=[(RawName("x"), b"v")]
        )
        await producer.send_and_wait(topic, second.encode(), key=b"k", partition=0)
    finally:
        await producer.stop()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_an_unreadable_record_is_dead_lettered_by_its_place_and_the_rest_flows(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    first, second = manual_record(unique("u")), manual_record(unique("u"))

    producing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRODUCE,
        BOOTSTRAP,
        kafka.topic_cadastro,
        encode(first).decode(),
        encode(second).decode(),
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
        cwd=ROOT,
    )
    assert await asyncio.wait_for(producing.wait(), timeout=60) == 0

    async with TopicReader(kafka.topic_dlq) as dlq:
        [dead] = await dlq.read(1, within=30)
        await dlq.nothing_more(within=0.5)
    headers = dict(dead.headers)
    assert (headers["dlq-source-partition"], headers["dlq-source-offset"]) == (b"0", b"1")
    assert headers["dlq-stage"] == b"decode"
    assert b"cannot read" in headers["dlq-reason"]
    conn = await asyncpg.connect(api_config.database_url)
    try:

        async def both_persisted() -> bool:
            ids = [first["productId"], second["productId"]]
            found = await conn.fetchval("SELECT count(*) FROM products WHERE id = ANY($1)", ids)
            return bool(found == 2)

        await eventually(both_persisted, within=30, what="the readable records persisted")
    finally:
        await conn.close()
    status = await (await scheduler.get("/status", headers=auth())).json()
    assert status["state"] == "running"

    async def committed_past_it() -> bool:
        status = await (await scheduler.get("/status", headers=auth())).json()
        return bool({p["partition"]: p["lag"] for p in status["partitions"]}[0] == 0)

    # Offsets are committed within SCHEDULER_COMMIT_INTERVAL (1 s) of the acknowledgement.
    await eventually(committed_past_it, within=10, what="partition 0 committed past the record")


# A record with neither key nor value, which Kafka allows and other clients send; aiokafka's
# producer refuses it with an assertion, skipped under ``python -O``.
PRODUCE_NOTHING = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main(bootstrap, topic):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, None, key=None, partition=0)
    finally:
        await producer.stop()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_record_with_neither_key_nor_value_is_dead_lettered(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    producing = await asyncio.create_subprocess_exec(
        sys.executable, "-O", "-c", PRODUCE_NOTHING, BOOTSTRAP, kafka.topic_cadastro, cwd=ROOT
    )
    assert await asyncio.wait_for(producing.wait(), timeout=60) == 0
    after = manual_record(unique("n"))
    await produce(kafka.topic_cadastro, [(after["productId"].encode(), encode(after))])

    async with TopicReader(kafka.topic_dlq) as dlq:
        [dead] = await dlq.read(1, within=30)
    assert (dead.key, dead.value) == (None, b"")
    assert dict(dead.headers)["dlq-reason"] == b"empty value"
    await eventually(
        lambda: persisted(api_config.database_url, after["productId"]),
        within=30,
        what="the next record persisted",
    )
