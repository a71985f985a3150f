"""SIGTERM ends each service within its timeout, even when a dependency was never reached:
nothing waits for PostgreSQL or Kafka on the way out."""

from __future__ import annotations

import re
import time

from .scenario import Scenario

# Well within the services' own shutdown timeouts (the scheduler's batch in flight: 15 s;
# the API's requests: 20 s), which a service that waits for nothing never needs.
EXIT_WITHIN = 10.0


def attempts(text: str, what: str) -> int:
    return len(re.findall(rf"{what} failed \(attempt \d+", text))


async def stop_both(scenario: Scenario) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for service in (scenario.api, scenario.scheduler):
        started = time.monotonic()
        assert await service.terminate(within=EXIT_WITHIN) == 0, service.log_tail()
        seconds[service.name] = time.monotonic() - started
    return seconds


async def test_sigterm_while_postgres_was_never_reached(scenario: Scenario) -> None:
    await scenario.infra.stop_postgres()
    api, scheduler = scenario.api, scenario.scheduler
    api.start()
    scheduler.start()

    async def waiting_for_postgres() -> bool:
        return attempts(api.log_text(), "connecting to PostgreSQL") >= 3

    await scenario.eventually(
        waiting_for_postgres, within=30, what="the API retrying PostgreSQL three times"
    )
    await scheduler.ready()  # Kafka is up: the scheduler consumes, the API answers 503
    assert await api.probe("/ready") == 503

    seconds = await stop_both(scenario)

    assert "connected to PostgreSQL" not in api.log_text()
    assert "will be redelivered" not in scheduler.log_text()
    assert "outbox relay stopped mid-round" not in api.log_text()
    scenario.assert_clean_logs()
    print(f"exit after SIGTERM, PostgreSQL never reached: {seconds}")


async def test_sigterm_while_kafka_was_never_reached(scenario: Scenario) -> None:
    await scenario.infra.stop_kafka()
    api, scheduler = scenario.api, scenario.scheduler
    api.start()
    scheduler.start()

    async def waiting_for_kafka() -> bool:
        return (
            attempts(api.log_text(), "connecting to Kafka") >= 3
            and attempts(scheduler.log_text(), "joining the consumer group") >= 3
        )

    await scenario.eventually(
        waiting_for_kafka, within=60, what="both services retrying Kafka three times"
    )
    assert await api.probe("/ready") == 503
    assert await scheduler.probe("/ready") == 503

    seconds = await stop_both(scenario)

    assert "connected to Kafka" not in api.log_text()
    assert "will be redelivered" not in scheduler.log_text()
    scenario.assert_clean_logs()
    print(f"exit after SIGTERM, Kafka never reached: {seconds}")
