"""The pipeline under faults, with real processes, the real broker and the real database.

Each scenario streams at least 2,000 products (and poison of every kind) to the entry
topic in the background, strikes once a given share is persisted (so the fault lands
mid-stream), recovers, and ends with the same checks (``Scenario.verify``): every product
exactly once in products, with the values sent, and at least once on
produtos-persistidos; exactly the poison on the dead-letter topic; the outbox drained; no
500 and no traceback in any service's log.
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal

from .scenario import BATCH_SIZE, Scenario, expected_document
from .workload import Expected

PRODUCTS = 2000
STRIKE_AT = 0.3 * PRODUCTS  # products persisted when the fault strikes


async def test_poison_interleaved_with_valid_records(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload(poison_per_kind=12, megabytes=3)
    async with scenario.stream(workload).running() as stream:
        pass

    row = await scenario.verify(workload, stream)

    assert row.dead_lettered == len(workload.poison)  # each exactly once: nothing failed
    assert row.duplicates_published == 0
    assert row.redelivered == 0


async def test_scheduler_killed_mid_stream_and_restarted(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    async with scenario.stream(workload).running() as stream:
        await scenario.wait_persisted(STRIKE_AT)
        scenario.scheduler.kill()
        scenario.scheduler.start()
        await scenario.scheduler.ready()

    await scenario.verify(workload, stream)


async def test_api_killed_mid_stream_and_restarted(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    async with scenario.stream(workload).running() as stream:
        await scenario.wait_persisted(STRIKE_AT)
        await scenario.before_api_goes()
        scenario.api.kill()
        scenario.api.start()
        await scenario.api.ready()

    await scenario.verify(workload, stream)


async def test_api_stopped_for_10_seconds_while_records_keep_arriving(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    # Slower, so that records keep arriving all through the outage.
    async with scenario.stream(workload, seconds=15).running() as stream:
        await scenario.wait_persisted(0.15 * PRODUCTS)
        await scenario.before_api_goes()
        assert await scenario.api.terminate() == 0
        arrived, persisted = stream.acknowledged, await scenario.persisted()

        await asyncio.sleep(10)  # the outage this scenario is about

        assert stream.acknowledged > arrived, "no record arrived during the outage"
        assert await scenario.persisted() == persisted, "persisted while the API was down"
        assert await scenario.scheduler.probe("/ready") == 503
        assert await scenario.scheduler.metric("retries_total", operation="persist") > 0
        scenario.api.start()
        await scenario.api.ready()

    await scenario.verify(workload, stream)


async def test_sigterm_to_the_scheduler_redelivers_at_most_the_batch_in_flight(
    scenario: Scenario,
) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    async with scenario.stream(workload).running() as stream:
        await scenario.wait_persisted(STRIKE_AT)
        seen_again = await scenario.api_unchanged()
        assert await scenario.scheduler.terminate() == 0
        log = scenario.scheduler.log.read_text()
        assert "consumer stopped" in log
        assert "will be redelivered" not in log  # stopped within its shutdown timeout
        scenario.scheduler.start()
        await scenario.scheduler.ready()

    row = await scenario.verify(workload, stream)

    assert row.redelivered - seen_again <= BATCH_SIZE
    assert row.duplicates_published == 0


async def test_sigterm_to_the_api_loses_nothing_and_the_scheduler_retries(
    scenario: Scenario,
) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    async with scenario.stream(workload).running() as stream:
        await scenario.wait_persisted(STRIKE_AT)
        await scenario.before_api_goes()
        assert await scenario.api.terminate() == 0

        async def scheduler_retried() -> bool:
            return await scenario.scheduler.metric("retries_total", operation="persist") > 0

        await scenario.eventually(
            scheduler_retried, within=30, what="the scheduler retrying while the API is down"
        )
        scenario.api.start()
        await scenario.api.ready()

    row = await scenario.verify(workload, stream)

    assert row.redelivered <= BATCH_SIZE
    assert row.duplicates_published == 0  # the relay finished its batch before exiting


async def test_kafka_stopped_and_restarted_mid_stream(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    direct = {f"direct-{n}": Expected(f"Direto {n}", Decimal("9.99"), n) for n in range(10)}
    async with scenario.stream(workload).running(within=180) as stream:
        await scenario.wait_persisted(STRIKE_AT)
        await scenario.infra.stop_kafka()

        # With Kafka down the API still persists; the events wait in the outbox.
        now = int(time.time() * 1000)
        for product_id, expected in direct.items():
            status, body = await scenario.post(
                "/produto/scheduler", expected_document(product_id, expected, now)
            )
            assert status == 201, body

        async def api_not_ready() -> bool:
            return await scenario.api.probe("/ready") == 503

        await scenario.eventually(api_not_ready, within=30, what="API /ready answering 503")

        # Down for longer than the producers' request timeout (15 s), so that what they
        # hold expires when the broker returns: the case that once wedged the relay.
        async def event_waited_16s() -> bool:
            return bool(
                await scenario.query(
                    "SELECT 1 FROM outbox WHERE created_at < now() - interval '16 seconds'"
                )
            )

        await scenario.eventually(
            event_waited_16s, within=40, what="an event waiting 16 s in the outbox"
        )
        await scenario.infra.start_kafka()

    # The events of the records posted during the outage flowed once Kafka returned.
    await scenario.verify(workload, stream, direct=direct)


async def test_postgres_stopped_and_restarted_mid_stream(scenario: Scenario) -> None:
    await scenario.start_services()
    workload = scenario.workload()
    refused = {f"refused-{n}": Expected(f"Recusado {n}", Decimal("1.00"), n) for n in range(2)}
    async with scenario.stream(workload).running() as stream:
        await scenario.wait_persisted(STRIKE_AT)
        await scenario.infra.stop_postgres()

        # With PostgreSQL down the API answers 503, as one record and as a batch.
        now = int(time.time() * 1000)
        documents = [expected_document(i, e, now) for i, e in refused.items()]
        status, body = await scenario.post("/produto/scheduler", documents[0])
        assert (status, body["error"]["code"]) == (503, "unavailable"), body
        status, body = await scenario.post(
            "/produto/scheduler/batch", {"items": [{"product": d} for d in documents]}
        )
        assert (status, body["error"]["code"]) == (503, "unavailable"), body
        assert await scenario.api.probe("/ready") == 503
        await scenario.infra.start_postgres()

    await scenario.verify(workload, stream)

    # Nothing half-written: what was answered 503 is neither stored nor published (verify
    # found no event beyond the expected products), and every stored product was published.
    assert await scenario.query("SELECT id FROM products WHERE id = ANY($1)", list(refused)) == []


RETRYING = re.compile(
    r"(connecting to PostgreSQL|connecting to Kafka|joining the consumer group)"
    r" failed .* retrying in (\d+\.\d+)s"
)


async def test_services_started_while_kafka_and_postgres_are_down_wait_for_them(
    scenario: Scenario,
) -> None:
    await scenario.infra.stop_kafka()
    await scenario.infra.stop_postgres()
    api, scheduler = scenario.api, scenario.scheduler
    api.start()
    scheduler.start()

    async def retried_a_few_times() -> bool:
        attempts = [m[1] for s in (api, scheduler) for m in RETRYING.finditer(s.log_text())]
        return all(attempts.count(what) >= 4 for what in set(attempts)) and len(set(attempts)) == 3

    await scenario.eventually(
        retried_a_few_times, within=30, what="both services retrying PostgreSQL and Kafka"
    )
    assert api.running and scheduler.running
    assert await api.probe("/ready") == 503
    assert await scheduler.probe("/ready") == 503
    delays = [float(m[2]) for s in (api, scheduler) for m in RETRYING.finditer(s.log_text())]
    assert max(delays) <= 1.0, "past RETRY_MAX_DELAY"
    assert max(delays) > 0.1, "no backoff beyond RETRY_INITIAL_DELAY"

    await scenario.infra.start_postgres()

    async def database_connected() -> bool:
        return "connected to PostgreSQL" in api.log_text()

    await scenario.eventually(database_connected, within=30, what="the API reaching PostgreSQL")
    assert await api.probe("/ready") == 503  # Kafka is still down
    await scenario.infra.start_kafka()
    await api.ready()
    await scheduler.ready()

    workload = scenario.workload()
    async with scenario.stream(workload).running() as stream:
        pass

    await scenario.verify(workload, stream)
