"""The API follows the PostgreSQL primary, on the real server: a server made read-only, its
sessions ended under load, a multi-host URL whose first host is down or comes back. A real
cluster (Patroni) is in tests/reliability; these need none."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

import services.api.database
from services.api import repository
from services.api.app import create_app as create_api
from services.api.config import SQL_DIR, ApiConfig, database_url
from services.api.database import Connection, Database
from services.api.keys import RELAY
from services.api.outbox import APPLICATION_NAME, OutboxRelay
from services.api.repository import Outcome
from services.common.contracts import load_transformed

from ..conftest import FAST_RETRY
from ..helpers import (
    DATABASE_URL,
    TcpForwarder,
    TopicReader,
    auth,
    eventually,
    execute,
    fetchval,
    free_ports,
    product_count,
    terminate_sessions,
    transformed_record,
    unique,
    wait_ready,
)

Client = TestClient[web.Request, web.Application]


def batch(ids: list[str]) -> dict[str, object]:
    return {"items": [{"product": transformed_record(product_id)} for product_id in ids]}


def with_hosts(url: str, hosts: str) -> str:
    """``url`` naming ``hosts`` (``localhost:5432,localhost:20001``) instead of its own."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{credentials}@{hosts}").geturl()


async def relay_becomes(relay: OutboxRelay, active: bool, *, within: float) -> float:
    """Wait until the relay holds slots (or holds none); returns the seconds it took."""
    started = time.monotonic()

    async def reached() -> bool:
        return relay.active == active

    what = "taking its slots" if active else "giving up its slots"
    await eventually(reached, within=within, what=f"the relay {what}", every=0.005)
    return time.monotonic() - started


async def primary_changes(api: Client) -> float:
    text = await (await api.get("/metrics")).text()
    [line] = [
        x for x in text.splitlines() if x.startswith("fluxo_api_database_primary_changes_total")
    ]
    return float(line.split()[-1])


@pytest.fixture
async def read_only(api_config: ApiConfig) -> AsyncIterator[str]:
    """The name of the test's database, made writable again at the end whatever happens."""
    name = urlsplit(api_config.database_url).path.lstrip("/")
    yield name
    await execute(DATABASE_URL, f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


async def test_a_read_only_server_is_answered_503_writes_nothing_and_writes_resume_by_themselves(
    api: Client, api_config: ApiConfig, read_only: str
) -> None:
    first = await api.post("/produto/scheduler", json=transformed_record("ro-1"), headers=auth())
    assert first.status == 201
    # What a demoted primary looks like: its sessions end, and new ones may only read.
    await execute(
        DATABASE_URL, f'ALTER DATABASE "{read_only}" SET default_transaction_read_only = on'
    )
    await terminate_sessions(api_config.database_url)

    refused = await api.post("/produto/scheduler", json=transformed_record("ro-2"), headers=auth())
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"]["code"] == "unavailable"
    bulk = await api.post("/produto/scheduler/batch", json=batch(["ro-3", "ro-4"]), headers=auth())
    assert bulk.status == 503
    ready = await (await api.get("/ready")).json()
    assert ready["database_primary"] is None
    assert await product_count(api_config.database_url) == 1
    # Reads still work on a read-only server.
    assert (await api.get("/produtos/ro-1", headers=auth())).status == 200

    # Writable again; the pooled sessions opened read-only are not ended by anyone.
    await execute(DATABASE_URL, f'ALTER DATABASE "{read_only}" RESET default_transaction_read_only')
    again = await api.post("/produto/scheduler", json=transformed_record("ro-2"), headers=auth())
    assert again.status == 201, await again.text()
    assert (await (await api.get("/ready")).json())["database_primary"] == "localhost:5432"
    assert await product_count(api_config.database_url) == 2


async def test_sessions_ended_under_load_fail_no_request_with_500_and_lose_no_record(
    api: Client, api_config: ApiConfig
) -> None:
    ids = [unique("load") for _ in range(400)]
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def writer(mine: list[str]) -> None:
        for start in range(0, len(mine), 20):
            while True:  # as the scheduler does: a 503 is sent again
                answer = await api.post(
                    "/produto/scheduler/batch", json=batch(mine[start : start + 20]), headers=auth()
                )
                statuses[answer.status] += 1
                if answer.status != 503:
                    break
                await asyncio.sleep(0.05)

    async def terminator() -> int:
        ended = 0
        while not stop.is_set():
            ended += await terminate_sessions(api_config.database_url)
            await asyncio.sleep(0.1)
        return ended

    ending = asyncio.create_task(terminator())
    try:
        await asyncio.gather(*(writer(ids[n::4]) for n in range(4)))
    finally:
        stop.set()
    ended = await ending
    assert ended > 0
    assert set(statuses) <= {200, 503}, statuses
    assert await product_count(api_config.database_url) == len(ids)


async def test_the_api_writes_to_the_first_host_that_takes_writes_and_counts_a_change_of_primary(
    api_config: ApiConfig, aiohttp_client: AiohttpClient
) -> None:
    closed = free_ports()
    # The first host is down (a lost node), the second is the real server.
    url = database_url(
        with_hosts(api_config.database_url, f"localhost:{closed},localhost:5432"), {}
    )
    api = await aiohttp_client(create_api(dataclasses.replace(api_config, database_url=url)))
    await wait_ready(api, "API")
    assert (await (await api.get("/ready")).json())["database_primary"] == "localhost:5432"
    answer = await api.post("/produto/scheduler", json=transformed_record("mh-1"), headers=auth())
    assert answer.status == 201
    assert await primary_changes(api) == 0

    # The first host comes back (a second name for the same server) and the sessions end,
    # as in a switchover back to it: the API's writes move there by themselves.
    async with TcpForwarder(closed, ("localhost", 5432)):
        await terminate_sessions(api_config.database_url)
        answer = await api.post(
            "/produto/scheduler", json=transformed_record("mh-2"), headers=auth()
        )
        assert answer.status == 201

        async def moved() -> bool:
            ready = await (await api.get("/ready")).json()
            return bool(ready["database_primary"] == f"localhost:{closed}")

        await eventually(moved, within=10, what="/ready naming the first host")
        assert await primary_changes(api) == 1
    assert await product_count(api_config.database_url) == 2


async def test_a_first_host_that_never_answers_is_passed_over_for_the_next(
    api_config: ApiConfig, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.api.database, "HOST_CONNECT_TIMEOUT", 0.5)
    # Its machine vanished: the connection is accepted (by the forwarder) and then silence.
    async with TcpForwarder(free_ports(), ("localhost", 5432)) as silent:
        silent.freeze()
        hosts = f"localhost:{silent.port},localhost:5432"
        url = database_url(with_hosts(api_config.database_url, hosts), {})
        api = await aiohttp_client(create_api(dataclasses.replace(api_config, database_url=url)))
        await wait_ready(api, "API")
        assert (await (await api.get("/ready")).json())["database_primary"] == "localhost:5432"
        answer = await api.post(
            "/produto/scheduler", json=transformed_record("s-1"), headers=auth()
        )
        assert answer.status == 201
        await relay_becomes(api.app[RELAY], True, within=10)


async def test_a_primary_gone_silent_is_left_for_the_next_host_without_waiting_for_tcp(
    api_config: ApiConfig, aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.api.database, "HOST_CONNECT_TIMEOUT", 0.5)
    async with TcpForwarder(free_ports(), ("localhost", 5432)) as first:
        hosts = f"localhost:{first.port},localhost:5432"
        url = database_url(with_hosts(api_config.database_url, hosts), {})
        api = await aiohttp_client(create_api(dataclasses.replace(api_config, database_url=url)))
        await wait_ready(api, "API")
        assert (await (await api.get("/ready")).json())["database_primary"] == hosts.split(",")[0]
        # Its machine vanishes: the pooled connections get no answer, no close, no reset.
        first.freeze()
        assert (await (await api.get("/ready")).json())["database_primary"] is None
        started = time.monotonic()
        answer = await api.post(
            "/produto/scheduler", json=transformed_record("g-1"), headers=auth()
        )
        assert answer.status == 201
        assert time.monotonic() - started < 5
        assert (await (await api.get("/ready")).json())["database_primary"] == "localhost:5432"
        assert await primary_changes(api) == 1


async def test_a_relay_whose_lock_connection_is_lost_stops_publishing_at_once_and_resumes(
    api: Client, api_config: ApiConfig
) -> None:
    relay = api.app[RELAY]
    await relay_becomes(relay, True, within=10)
    async with TopicReader(api_config.kafka.topic_persistidos) as events:
        first = await api.post("/produto/scheduler", json=transformed_record("f-1"), headers=auth())
        assert first.status == 201
        await events.read(1)
        assert await terminate_sessions(api_config.database_url, APPLICATION_NAME) == 1
        stopped_after = await relay_becomes(relay, False, within=1)
        await relay_becomes(relay, True, within=10)
        second = await api.post(
            "/produto/scheduler", json=transformed_record("f-2"), headers=auth()
        )
        assert second.status == 201
        await events.read(2)
    assert stopped_after < 0.5


async def test_a_relay_whose_lock_connection_goes_silent_stops_publishing_when_its_lease_ends(
    api_config: ApiConfig, aiohttp_client: AiohttpClient
) -> None:
    lease = 2.0
    async with TcpForwarder(free_ports(), ("localhost", 5432)) as node:
        url = with_hosts(api_config.database_url, f"localhost:{node.port}")
        config = dataclasses.replace(api_config, database_url=url, outbox_relay_lease=lease)
        api = await aiohttp_client(create_api(config))
        relay = api.app[RELAY]
        await relay_becomes(relay, True, within=10)
        # The server's machine vanishes: no close, no reset, no answer.
        node.freeze()
        stopped_after = await relay_becomes(relay, False, within=lease + 2)
        node.thaw()
        await relay_becomes(relay, True, within=15)
    assert stopped_after <= lease + 0.5


async def test_a_write_whose_commit_went_unanswered_runs_again_and_enqueues_no_second_event(
    database: str,
) -> None:
    db = Database(database, 2, SQL_DIR, FAST_RETRY)
    await db.open()
    product = load_transformed(transformed_record("unknown-commit"))
    outcomes: list[Outcome] = []

    async def write(conn: Connection) -> None:
        [outcome] = await repository.upsert_products(conn, [(product, None)], "events")
        outcomes.append(outcome)
        if len(outcomes) == 1:
            # The statement committed; the session ends before the client learns it.
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    try:
        await db.run(write, what="persisting a product")
    finally:
        await db.close()
    assert outcomes == [Outcome.CREATED, Outcome.UNCHANGED]
    assert await fetchval(database, "SELECT count(*) FROM outbox") == 1
