"""The scheduler application: ``create_app(config)`` wires the consumer and the endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from ..common.docs import setup_docs
from ..common.kafka import ManagedProducer
from ..common.metrics import SchedulerMetrics
from ..common.service import cancel_and_wait, service_app
from ..common.tracing import TRACING, Tracing
from .api_client import ApiClient
from .asyncapi import setup_asyncapi
from .config import SchedulerConfig
from .consumer import ProductConsumer
from .dead_letter_handlers import bulk_spec
from .dead_letter_handlers import routes as dead_letter_routes
from .dead_letter_index import DeadLetterIndex
from .flow import Flow
from .handlers import replay_spec, routes
from .keys import (
    API,
    CONFIG,
    CONSUMER,
    DEAD_LETTER_INDEX,
    DEAD_LETTERS,
    FLOW,
    METRICS,
    REDRIVE_JOBS,
    REDRIVER,
)
from .redrive_jobs import RedriveJobs
from .redrives import RedriveLog, Redriver

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Consumes cadastro-produtos, transforms each record and hands it to the API; "
    "operator endpoints pause, resume and replay consumption, and re-drive dead letters. "
    "Authorize with 'Bearer <API_TOKEN>'.\n\n"
    "The Kafka side (topics, record schemas, headers, dead letters) is described by an "
    "AsyncAPI document: [rendered](/asyncapi), or as [JSON](/asyncapi.json)."
)


def create_app(config: SchedulerConfig, tracing: Tracing | None = None) -> web.Application:
    """Build the application; no I/O happens until it starts."""
    metrics = SchedulerMetrics()
    app = service_app(config.api_tokens, metrics, tracing or Tracing(), config.http)
    app[CONFIG] = config
    app[METRICS] = metrics
    app.cleanup_ctx.extend([api_client_ctx, dead_letters_ctx, redrives_ctx, consumer_ctx, flow_ctx])
    app.router.add_routes(routes)
    app.router.add_routes(dead_letter_routes)
    setup_asyncapi(app)

    def refine(spec: dict[str, Any]) -> None:
        replay_spec(spec, config.kafka.partitions)
        bulk_spec(spec)

    setup_docs(app, "fluxo-dados scheduler", DESCRIPTION, refine=refine)
    return app


async def api_client_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # One pooled session for every call to the API.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=config.request_timeout),
        connector=aiohttp.TCPConnector(limit=8),
    ) as session:
        app[API] = ApiClient(session, config.api_urls, config.api_tokens[0], app[METRICS])
        yield


async def dead_letters_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    producer = ManagedProducer(config.kafka, config.retry)
    app[DEAD_LETTERS] = producer
    starting = asyncio.create_task(producer.start(), name="dead-letter-producer-start")
    yield
    await cancel_and_wait(starting)
    await producer.stop()


async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    consumer = ProductConsumer(
        config,
        app[API],
        app[DEAD_LETTERS],
        app[METRICS],
        app[TRACING],
        dead_lettered=app[DEAD_LETTER_INDEX].holds,
    )
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


async def flow_ctx(app: web.Application) -> AsyncIterator[None]:
    """What the status page shows: counters sampled every second, lag asked of the broker."""
    config = app[CONFIG]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        flow = Flow(app[CONSUMER], app[METRICS], session, config.api_url)
        app[FLOW] = flow
        sampling = asyncio.create_task(flow.run(), name="flow-sampler")
        yield
        await cancel_and_wait(sampling)


async def redrives_ctx(app: web.Application) -> AsyncIterator[None]:
    """Dead letters listed and re-driven, on Kafka clients of their own: a producer, the
    followers of the dead-letter and state topics, a reader of dead-letter positions."""
    config = app[CONFIG]
    producer = ManagedProducer(config.kafka, config.retry)
    state = RedriveLog(config.kafka, config.retry, producer)
    index = DeadLetterIndex(config.kafka, config.retry, producer, state)
    app[DEAD_LETTER_INDEX] = index
    app[REDRIVER] = Redriver(
        config.kafka, producer, state, index, app[METRICS], config.redrive_claim_seconds
    )
    app[REDRIVE_JOBS] = RedriveJobs(app[REDRIVER], index, app[API])

    async def run() -> None:
        await producer.start()  # creates the state topic when missing
        await asyncio.gather(state.run(), index.run())

    running = asyncio.create_task(run(), name="dead-letters")
    yield
    state.stop()
    index.stop()
    await cancel_and_wait(running)
    await app[REDRIVE_JOBS].stop()
    await app[REDRIVER].stop()
    await producer.stop()
