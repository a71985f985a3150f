"""The raw limits of each stage on this machine, with the pipeline's own records.

Each stage runs alone, while the pipeline is idle: aiokafka producing to and consuming
from a scratch topic, the API's own upsert into a throw-away database, and one aiohttp
hop carrying the scheduler's batch bodies. The pipeline can go no faster than its
slowest stage; the report shows how close it gets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.api.config import SQL_DIR
from services.api.database import apply_migrations
from services.api.repository import upsert_products
from services.common.kafka import client_settings, create_producer, ensure_topics
from services.scheduler.api_client import BATCH_PATH

from .database import scratch_database
from .pipeline import produce_full_speed
from .records import batch_rows
from .report import Stage
from .settings import Settings

log = logging.getLogger(__name__)


async def kafka(
    settings: Settings, run_id: str, values: Sequence[tuple[bytes, bytes]]
) -> list[Stage]:
    """Produce the records to a scratch topic (the services' producer settings: acks=all,
    idempotent), then read them back as the scheduler's consumer would, without a group."""
    topic = f"bench-{run_id}.scratch"
    await ensure_topics(settings.kafka, [topic])
    try:
        producer = create_producer(settings.kafka)
        try:
            await producer.start()
            await producer.partitions_for(topic)  # metadata first: not part of the figure
            _, produce_seconds = await produce_full_speed(producer, topic, values)
        finally:
            await producer.stop()
        consume_seconds = await _consume(settings, topic, len(values))
    finally:
        admin = AIOKafkaAdminClient(**client_settings(settings.kafka))
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return [
        Stage("aiokafka produce (acks=all, batched)", len(values), round(produce_seconds, 4)),
        Stage("aiokafka consume", len(values), round(consume_seconds, 4)),
    ]


async def _consume(settings: Settings, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        **client_settings(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 1024 * 1024,  # as the scheduler's consumer
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, seen = time.monotonic(), 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.batch_size)
            seen += sum(len(batch) for batch in batches.values())
        return time.monotonic() - started
    finally:
        await consumer.stop()


async def database(settings: Settings, run_id: str, bodies: Sequence[bytes]) -> Stage:
    """The API's ``upsert_products``, one statement per scheduler batch, as the API runs
    it, into a database created for the stage and dropped after it."""
    batches = [batch_rows(body) for body in bodies]  # validated as the API does, untimed
    async with scratch_database(settings.api.database_url, f"bench_{run_id}") as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn, SQL_DIR)
            started = time.monotonic()
            for batch in batches:
                await upsert_products(conn, batch, settings.kafka.topic_persistidos)
            seconds = time.monotonic() - started
        finally:
            await conn.close()
    return Stage("asyncpg upsert_products", sum(len(b) for b in batches), round(seconds, 4))


async def http(settings: Settings, bodies: Sequence[bytes], records: int) -> Stage:
    """The scheduler's batch bodies posted one at a time (as the scheduler does) to a
    trivial aiohttp server in this process that parses them and answers a small JSON."""

    async def handler(request: web.Request) -> web.Response:
        items = orjson.loads(await request.read())["items"]
        return web.Response(
            body=orjson.dumps({"received": len(items)}), content_type="application/json"
        )

    app = web.Application(client_max_size=settings.api.max_body_bytes)
    app.router.add_post(BATCH_PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        headers = {"Authorization": f"Bearer {settings.token}", "Content-Type": "application/json"}
        # The scheduler's session: the same timeout and connection pool.
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.scheduler.request_timeout),
            connector=aiohttp.TCPConnector(limit=8),
        ) as session:
            started = time.monotonic()
            for body in bodies:
                async with session.post(
                    f"http://{host}:{port}{BATCH_PATH}", data=body, headers=headers
                ) as response:
                    orjson.loads(await response.read())
            seconds = time.monotonic() - started
    finally:
        await runner.cleanup()
    return Stage("aiohttp hop (scheduler's batch bodies)", records, round(seconds, 4))
