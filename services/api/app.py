"""The API application: ``create_app(config)`` wires resources, middlewares and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..common.http import (
    Metrics,
    bearer_auth,
    error_middleware,
    metrics_handler,
    setup_docs,
    trace_middleware,
)
from ..common.kafka import ManagedProducer
from .config import ApiConfig
from .database import Database
from .handlers import routes
from .keys import CONFIG, DATABASE, METRICS, PRODUCER, RELAY
from .outbox import OutboxRelay

log = logging.getLogger(__name__)

RELAY_STOP_TIMEOUT = 10.0

DESCRIPTION = (
    "Persists product records in PostgreSQL and publishes what it persisted on Kafka. "
    "Authorize with 'Bearer <API_TOKEN>'."
)


def create_app(config: ApiConfig) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    app = web.Application(
        middlewares=[trace_middleware, error_middleware, bearer_auth(config.api_token)],
        client_max_size=config.max_body_bytes,
    )
    metrics = Metrics("fluxo_api")
    metrics.counter("manual_records_total", "Records produced by POST /produto/manual.")
    metrics.counter("persisted_records_total", "Records persisted, by outcome.")
    app[CONFIG] = config
    app[METRICS] = metrics
    app.cleanup_ctx.extend([database_ctx, producer_ctx, relay_ctx])
    app.router.add_routes(routes)
    app.router.add_get("/metrics", metrics_handler(metrics), allow_head=False)
    setup_docs(app, "fluxo-dados API", DESCRIPTION)
    return app


async def _background(start: asyncio.Task[None]) -> None:
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    database = Database(
        config.database_url, config.database_pool_size, config.sql_dir, config.retry
    )
    app[DATABASE] = database
    opening = asyncio.create_task(database.open(), name="database-open")
    yield
    await _background(opening)
    await database.close()


async def producer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    producer = ManagedProducer(config.kafka, config.retry)
    app[PRODUCER] = producer
    starting = asyncio.create_task(producer.start(), name="kafka-producer-start")
    yield
    await _background(starting)
    await producer.stop()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    relay = OutboxRelay(
        config.database_url,
        app[PRODUCER],
        app[METRICS],
        batch_size=config.outbox_batch_size,
        poll_interval=config.outbox_poll_interval,
        retry=config.retry,
    )
    app[RELAY] = relay
    running = asyncio.create_task(relay.run(app[DATABASE]), name="outbox-relay")
    yield
    relay.stop()
    try:
        # The round in flight finishes, so its events are not published again; a round
        # held up by an unreachable broker or database is given up (and published later).
        await asyncio.wait_for(running, RELAY_STOP_TIMEOUT)
    except TimeoutError:
        log.warning("outbox relay stopped mid-round after %.0fs", RELAY_STOP_TIMEOUT)
