"""A PostgreSQL cluster under Patroni loses its primary, switches over, loses its etcd leader,
each mid-stream.

Each scenario runs on a cluster of its own (scripts/postgres.sh with POSTGRES_NODES=3 on free
ports, synchronous replication in strict mode), its services given the multi-host URL with
target_session_attrs=read-write, as `make up POSTGRES_NODES=3` gives them. The stream sends
20,000 records over 500 products, each product 40 times, version v with stock quantity v, so
that every product is being updated when the fault strikes. After it:

- every row holds its product's last version, and nothing acknowledged is lost (verify);
- every product's final version is on produtos-persistidos (verify);
- once duplicates are dropped by event-id, each product's versions on the topic only go up;
- the API never answered 500 (its metrics, and verify's look at the logs).

Each reports, from the fault: a writable primary again, the first record persisted after
it; and the 503 answers and the events published twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from .conftest import open_scenario
from .harness import RUN_DIR, Infrastructure, PatroniCluster
from .scenario import Results, Scenario
from .workload import build_updates, versions_in_order

PRODUCTS = 500
VERSIONS = 40  # 20,000 records
STREAM_SECONDS = 30
STRIKE_AT = 0.3  # of the records acknowledged by the broker
# The targets, seconds from the fault.
NEW_PRIMARY_WITHIN = 30
PERSISTED_WITHIN = 45
SWITCHOVER_PERSISTED_WITHIN = 10
# What persisting looks like from outside: the sum of every product's version rises.
PROGRESS = "SELECT inet_server_port(), coalesce(sum(stock_quantity), 0) FROM products"


@pytest.fixture
def patroni(request: pytest.FixtureRequest) -> Iterator[PatroniCluster]:
    name = request.node.name.removeprefix("test_")
    cluster = PatroniCluster(run_dir=RUN_DIR / name / "patroni")
    cluster.start_afresh()
    try:
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class Outcome:
    primary_moved: bool
    new_primary: float  # seconds from the fault to a writable primary
    persisted: float  # ... to the first record persisted after it
    answered_503: int
    published_twice: int


async def progress(scenario: Scenario) -> tuple[int, int] | None:
    """The port of the primary and the sum of versions persisted; None without a primary."""
    try:
        conn = await asyncpg.connect(scenario.database_url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        row = await conn.fetchrow(PROGRESS)
    except (OSError, asyncpg.PostgresError):
        return None
    finally:
        conn.terminate()
    assert row is not None
    return row[0], row[1]


async def api_answers(scenario: Scenario, status: int, route: str = "") -> int:
    """How many requests the API answered with ``status``, on the routes that start with
    ``route`` (every route by default)."""
    code, text = await scenario.api.get("/metrics")
    assert code == 200, text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("fluxo_http_request_duration_seconds_count{")
            and f'status="{status}"' in line
            and f'route="{route}' in line
        ):
            total += float(line.rpartition(" ")[2])
    return round(total)


async def fail_over(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    patroni: PatroniCluster,
    fault: str,
    strike: Callable[[], Awaitable[object]],
    *,
    primary_moves: bool,
) -> Outcome:
    """The stream, ``strike`` mid-stream, the times it took, and every scenario's checks."""
    async with open_scenario(
        request, infrastructure, results, bootstrap=infrastructure.bootstrap, server_url=patroni.url
    ) as scenario:
        await scenario.start_services()
        workload = build_updates(scenario.kafka.topic_cadastro.split(".")[0], PRODUCTS, VERSIONS)
        sent = len(workload.messages)
        async with scenario.stream(workload, seconds=STREAM_SECONDS).running(within=180) as stream:

            async def under_way() -> bool:
                return stream.acknowledged >= STRIKE_AT * sent

            await scenario.eventually(under_way, within=60, what=f"{STRIKE_AT:.0%} of {sent} sent")
            before = await progress(scenario)
            assert before is not None, "no primary before the fault"
            struck = time.monotonic()
            await strike()

            async def writable() -> tuple[int, int] | None:
                now = await progress(scenario)
                if now is None or (primary_moves and now[0] == before[0]):
                    return None
                return now

            promoted = await scenario.eventually(
                writable, within=NEW_PRIMARY_WITHIN, what="a writable primary after the fault"
            )
            new_primary = time.monotonic() - struck
            if not primary_moves:
                assert promoted[0] == before[0], f"the primary moved from {before[0]}"

            async def persisting() -> bool:
                now = await progress(scenario)
                return now is not None and now[1] > promoted[1]

            limit = SWITCHOVER_PERSISTED_WITHIN if fault == "switchover" else PERSISTED_WITHIN
            await scenario.eventually(
                persisting,
                within=limit - new_primary,
                what=f"a record persisted within {limit} s of the fault",
            )
            persisted = time.monotonic() - struck

        row = await scenario.verify(workload, stream, within=120)
        versions_in_order(scenario.published)
        assert await api_answers(scenario, 500) == 0, "the API answered 500"
        outcome = Outcome(
            primary_moves,
            new_primary,
            persisted,
            # Writes only: /ready answers 503 too, until the services are ready.
            await api_answers(scenario, 503, "/produto/"),
            row.duplicates_published,
        )
    results.notes.append(
        f"database failover, {fault}: "
        + (
            f"a writable primary again after {outcome.new_primary:.1f} s"
            if primary_moves
            else "the primary never changed"
        )
        + f", the first record persisted after it {outcome.persisted:.1f} s after the fault; "
        f"{outcome.answered_503} requests answered 503, {outcome.published_twice} events "
        f"published twice (of {row.published})."
    )
    return outcome


async def test_the_primary_node_killed_mid_stream(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    patroni: PatroniCluster,
) -> None:
    async def lose_the_primary_machine() -> None:
        leader = patroni.leader()
        assert leader is not None, "no leader"
        patroni.kill_node(leader)  # its etcd member stays up

    await fail_over(
        request,
        infrastructure,
        results,
        patroni,
        "kill -9 of the primary's Patroni and postgres",
        lose_the_primary_machine,
        primary_moves=True,
    )


async def test_a_switchover_mid_stream(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    patroni: PatroniCluster,
) -> None:
    async def switch_over() -> None:
        await asyncio.to_thread(patroni.switchover)

    await fail_over(
        request, infrastructure, results, patroni, "switchover", switch_over, primary_moves=True
    )


async def test_the_etcd_leader_killed_mid_stream(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    patroni: PatroniCluster,
) -> None:
    async def lose_the_etcd_leader() -> None:
        patroni.kill_etcd(patroni.etcd_leader())

    outcome = await fail_over(
        request,
        infrastructure,
        results,
        patroni,
        "kill -9 of the etcd leader",
        lose_the_etcd_leader,
        primary_moves=False,
    )
    assert outcome.answered_503 == 0, "the pipeline saw the etcd election"
