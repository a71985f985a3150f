"""The scheduler application: ``create_app(config)`` wires the consumer and the endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
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
from .api_client import ApiClient
from .config import SchedulerConfig
from .consumer import ProductConsumer
from .handlers import routes
from .keys import API, CONFIG, CONSUMER, DEAD_LETTERS, METRICS

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Consumes cadastro-produtos, transforms each record and hands it to the API; "
    "operator endpoints pause, resume and replay consumption. "
    "Authorize with 'Bearer <API_TOKEN>'."
)


def create_app(config: SchedulerConfig) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    app = web.Application(
        middlewares=[trace_middleware, error_middleware, bearer_auth(config.api_token)]
    )
    app[CONFIG] = config
    app[METRICS] = Metrics("fluxo_scheduler")
    app.cleanup_ctx.extend([api_client_ctx, dead_letters_ctx, consumer_ctx])
    app.router.add_routes(routes)
    app.router.add_get("/metrics", metrics_handler(app[METRICS]), allow_head=False)
    setup_docs(app, "fluxo-dados scheduler", DESCRIPTION)
    return app


async def api_client_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # One pooled session for every call to the API.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=config.request_timeout),
        connector=aiohttp.TCPConnector(limit=8),
    ) as session:
        app[API] = ApiClient(session, config.api_urls, config.api_token)
        yield


async def dead_letters_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    producer = ManagedProducer(config.kafka, config.retry)
    app[DEAD_LETTERS] = producer
    starting = asyncio.create_task(producer.start(), name="dead-letter-producer-start")
    yield
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    await producer.stop()


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    consumer = ProductConsumer(config, app[API], app[DEAD_LETTERS], app[METRICS])
    app[CONSUMER] = consumer
    running = asyncio.create_task(consumer.run(), name="consumer")
    yield
    consumer.stop()
    try:
        # The batch in flight finishes and is committed; past the timeout it is given up
        # uncommitted, and delivered again after the restart.
        await asyncio.wait_for(running, config.shutdown_timeout)
    except TimeoutError:
        log.warning(
            "batch in flight given up after %.0fs; it will be redelivered", config.shutdown_timeout
        )
