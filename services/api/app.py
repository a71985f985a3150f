"""The API application: ``create_app(config)`` wires resources, middlewares and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from ..common.docs import setup_docs
from ..common.errors import Unavailable
from ..common.kafka import ManagedProducer
from ..common.metrics import ApiMetrics
from ..common.service import cancel_and_wait, service_app
from ..common.tracing import TRACING, Tracing
from . import repository
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


# How often the outbox backlog gauges are read from the database.
OUTBOX_GAUGES_INTERVAL = 5.0


def create_app(config: ApiConfig, tracing: Tracing | None = None) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    metrics = ApiMetrics()
    app = service_app(
        config.api_tokens,
        metrics,
        tracing or Tracing(),
        config.http,
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG] = config
    app[METRICS] = metrics
    app.cleanup_ctx.extend([database_ctx, producer_ctx, relay_ctx, outbox_gauges_ctx])
    app.router.add_routes(routes)
    setup_docs(app, "fluxo-dados API", DESCRIPTION)
    return app


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    metrics = app[METRICS]
    database = Database(
        config.database_url,
        config.database_pool_size,
        config.sql_dir,
        config.retry,
        on_primary_change=lambda *_: metrics.database_primary_changes.inc(),
    )
    app[DATABASE] = database
    metrics.watch_pool(
        database.pool_in_use, database.pool_size, lambda: 0.0 if database.primary is None else 1.0
    )
    opening = asyncio.create_task(database.open(), name="database-open")
    yield
    await cancel_and_wait(opening)
    await database.close()


async def producer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # No linger: the relay hands over one full batch per partition, and POST /produto/manual
    # waits for its record's acknowledgement; waiting for more records would only add latency.
    producer = ManagedProducer(config.kafka, config.retry, linger_ms=0)
    app[PRODUCER] = producer
    starting = asyncio.create_task(producer.start(), name="kafka-producer-start")
    yield
    await cancel_and_wait(starting)
    await producer.stop()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    relay = OutboxRelay(
        config.database_url,
        app[PRODUCER],
        app[METRICS],
        app[TRACING],
        batch_size=config.outbox_batch_size,
        poll_interval=config.outbox_poll_interval,
        retry=config.retry,
        lease=config.outbox_relay_lease,
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


async def outbox_gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep the outbox backlog gauges fresh (every replica reports the same table), and the
    primary known (a failover is seen within this interval even while no request comes)."""

    async def refresh() -> None:
        metrics, database = app[METRICS], app[DATABASE]
        while True:
            try:
                async with database.connection() as conn:  # one connection: the pool stays small
                    await database.note_primary(conn)
                    backlog, oldest_age = await repository.outbox_backlog(conn)
            except (Unavailable, asyncpg.PostgresError):
                pass  # the gauges keep their last value; /ready says the database is down
            else:
                metrics.outbox_backlog.set(backlog)
                metrics.outbox_oldest_age.set(oldest_age)
            await asyncio.sleep(OUTBOX_GAUGES_INTERVAL)

    refreshing = asyncio.create_task(refresh(), name="outbox-gauges")
    yield
    await cancel_and_wait(refreshing)
