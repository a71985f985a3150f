"""Fixtures of the reliability suite.

The suite stops, kills and restarts Kafka and PostgreSQL, so it runs its own: a broker on
localhost:19092 and a PostgreSQL cluster on port 15432, started by scripts/kafka.sh and
scripts/postgres.sh with ``FLUXO_RUN_DIR=.run/reliability`` for the session and stopped
at its end. The shared ones on 9092 and 5432 are never touched. Each scenario gets its own
topics, consumer group, database, ports and log files (``.run/reliability/<scenario>/``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from _pytest.terminal import TerminalReporter

from services.common.config import KafkaConfig
from services.common.kafka import ensure_topics

from ..helpers import create_database, drop_database, free_ports, unique
from .harness import RUN_DIR, Infrastructure
from .scenario import Results, Scenario

RESULTS = pytest.StashKey[Results]()


@pytest.fixture(scope="session")
def results(request: pytest.FixtureRequest) -> Iterator[Results]:
    """The table every scenario adds its row to, printed at the end of the session."""
    results = Results()
    request.config.stash[RESULTS] = results
    yield results
    results.seconds = time.monotonic() - results.started
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / "results.md").write_text(results.markdown() + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def infrastructure(results: Results) -> Iterator[Infrastructure]:
    infra = Infrastructure()
    infra.start_afresh()
    try:
        yield infra
    finally:
        infra.stop()


@contextlib.asynccontextmanager
async def open_scenario(
    request: pytest.FixtureRequest,
    infrastructure: Infrastructure,
    results: Results,
    *,
    bootstrap: str,
    partitions: int = 3,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    server_url: str | None = None,
) -> AsyncIterator[Scenario]:
    """A scenario's topics (on the brokers of ``bootstrap``), database (on the server of
    ``server_url``, by default the suite's), ports and logs."""
    server = server_url or infrastructure.server_url
    await infrastructure.ensure_started()
    name = request.node.name.removeprefix("test_")
    run = unique("r")
    kafka = KafkaConfig(
        bootstrap_servers=bootstrap,
        topic_cadastro=f"{run}.cadastro-produtos",
        topic_persistidos=f"{run}.produtos-persistidos",
        topic_dlq=f"{run}.cadastro-produtos.dlq",
        partitions=partitions,
        replication_factor=replication_factor,
        min_insync_replicas=min_insync_replicas,
    )
    await ensure_topics(kafka)
    database = await create_database(server)
    log_dir = RUN_DIR / name
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        scenario = Scenario(
            name=name,
            infra=infrastructure,
            kafka=kafka,
            database_url=database,
            consumer_group=unique("reliability"),
            log_dir=log_dir,
            http=http,
            api_port=free_ports(),
            scheduler_port=free_ports(),
            results=results,
        )
        try:
            yield scenario
        finally:
            scenario.discard()
            await infrastructure.ensure_started()
            await drop_database(database, server)


@pytest.fixture
async def scenario(
    request: pytest.FixtureRequest, infrastructure: Infrastructure, results: Results
) -> AsyncIterator[Scenario]:
    async with open_scenario(
        request, infrastructure, results, bootstrap=infrastructure.bootstrap
    ) as scenario:
        yield scenario


def pytest_terminal_summary(terminalreporter: TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, None)
    if results is not None and results.rows:
        terminalreporter.write_sep("-", f"reliability results (also in {RUN_DIR}/results.md)")
        terminalreporter.write_line(results.markdown())
