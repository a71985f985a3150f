"""A consumer that stops fetching is noticed and restarted; meanwhile the probes say so."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer

from services.api.config import ApiConfig
from services.common.config import KafkaConfig
from services.common.kafka import fetch_task
from services.scheduler.config import SchedulerConfig
from services.scheduler.keys import CONSUMER

from ..helpers import auth, eventually, flows

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def scheduler_config(scheduler_config: SchedulerConfig) -> SchedulerConfig:
    return dataclasses.replace(scheduler_config, stall_timeout=1.0)


def kafka_consumer(scheduler: Client) -> AIOKafkaConsumer:
    consumer = scheduler.app[CONSUMER]._consumer
    assert consumer is not None, "the scheduler is not consuming"
    return consumer


async def state(scheduler: Client) -> str:
    status: str = (await (await scheduler.get("/status", headers=auth())).json())["state"]
    return status


@pytest.mark.parametrize("how", ["cancelled", "crashed on an offset past int64"])
async def test_a_dead_fetch_task_is_noticed_and_the_consumer_restarted(
    how: str, api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    await flows(kafka, api_config.database_url, within=30)
    consumer = kafka_consumer(scheduler)
    task = fetch_task(consumer)
    assert task is not None and not task.done()

    if how == "cancelled":
        task.cancel()
    else:  # what a replay to 2**63 once did: aiokafka's fetcher cannot encode the request
        for tp in consumer.assignment():
            consumer.seek(tp, 2**63)

    await eventually(lambda: _done(task), within=5, what="the fetch task ending")
    # Until it runs again, the probes tell the truth.
    assert not scheduler.app[CONSUMER].consuming
    assert await state(scheduler) in {"stalled", "restarting", "starting"}
    assert (await scheduler.get("/ready")).status == 503

    async def running_again() -> bool:
        return (await scheduler.get("/ready")).status == 200 and await state(scheduler) == "running"

    await eventually(running_again, within=15, what="the consumer running again")
    assert kafka_consumer(scheduler) is not consumer
    await flows(kafka, api_config.database_url, within=5)


async def _done(task: asyncio.Future[None]) -> bool:
    return task.done()


async def test_no_progress_while_records_wait_restarts_the_consumer(
    api: Client, scheduler: Client, kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    await flows(kafka, api_config.database_url, within=30)
    consumer = kafka_consumer(scheduler)
    # Fetching stops without the scheduler knowing (its fetch task stays alive).
    consumer.pause(*consumer.assignment())

    await flows(
        kafka,
        api_config.database_url,
        within=15,
        what="the waiting record persisted after the stall was noticed",
    )
    assert kafka_consumer(scheduler) is not consumer
