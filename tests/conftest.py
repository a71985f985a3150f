"""Fixtures: each integration test gets its own topics, database and service instances."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from services.api.app import create_app as create_api
from services.api.config import ApiConfig
from services.common.config import KafkaConfig, RetryConfig
from services.common.tracing import Tracing
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.asyncapi import committed_config, document
from services.scheduler.config import SchedulerConfig

from .asyncapi_records import TAP, Messages
from .doc_blocks import marked_summary
from .helpers import (
    BOOTSTRAP,
    SESSION_TOPICS,
    TOKEN,
    create_database,
    delete_session_topics,
    drop_database,
    isolated_kafka,
    unique,
    wait_ready,
)

Client = TestClient[web.Request, web.Application]

FAST_RETRY = RetryConfig(initial_delay=0.05, max_delay=0.5)

# Debian's chromium and chromium-driver (make test-tools): the pages in a real browser.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session", autouse=True)
def _delete_the_sessions_topics() -> Iterator[None]:
    yield
    try:
        if TAP.topics:
            messages = Messages(document(committed_config()))
            asyncio.run(TAP.check(messages, BOOTSTRAP))
            if TAP.problems:
                pytest.fail(f"{TAP.summary()}:\n" + "\n".join(TAP.problems[:30]), pytrace=False)
    finally:
        if SESSION_TOPICS:
            asyncio.run(delete_session_topics())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many records the AsyncAPI tap read; after a run of tests/test_docs.py, the docs'
    commands that the suite does not run."""
    if TAP.counts or TAP.problems:
        terminalreporter.write_line(TAP.summary())
    if any(
        report.nodeid.startswith("tests/test_docs.py")
        for reports in terminalreporter.stats.values()
        for report in reports
        if hasattr(report, "nodeid")
    ):
        terminalreporter.section("commands of README.md and docs/")
        for line in marked_summary():
            terminalreporter.write_line(line)


@pytest.fixture
def kafka() -> KafkaConfig:
    return isolated_kafka()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture
def api_config(kafka: KafkaConfig, database: str) -> ApiConfig:
    return ApiConfig(
        api_tokens=(TOKEN,),
        database_url=database,
        kafka=kafka,
        retry=FAST_RETRY,
        outbox_poll_interval=0.2,
        max_body_bytes=256 * 1024,
    )


@pytest.fixture
def tracing() -> Tracing | None:
    """The services' tracing: their own default (no SDK, no export) unless a test module
    overrides this fixture."""
    return None


@pytest.fixture
async def api(
    api_config: ApiConfig, tracing: Tracing | None, aiohttp_client: AiohttpClient
) -> Client:
    """The API, started on a free port and ready (database migrated, Kafka connected)."""
    client = await aiohttp_client(create_api(api_config, tracing))
    await wait_ready(client, "API")
    TAP.events(api_config.kafka)
    return client


@pytest.fixture
def scheduler_config(kafka: KafkaConfig, api: Client) -> SchedulerConfig:
    server: TestServer = api.server  # type: ignore[assignment]
    return SchedulerConfig(
        api_tokens=(TOKEN,),
        api_url=str(server.make_url("")).rstrip("/"),
        kafka=kafka,
        retry=FAST_RETRY,
        consumer_group=unique("group"),
        shutdown_timeout=5,
    )


@pytest.fixture
async def scheduler(
    scheduler_config: SchedulerConfig, tracing: Tracing | None, aiohttp_client: AiohttpClient
) -> Client:
    """The scheduler, consuming the test's topic and calling the test's API."""
    client = await aiohttp_client(create_scheduler(scheduler_config, tracing))
    await wait_ready(client, "scheduler")
    TAP.dead_letters(scheduler_config.kafka)
    return client


@pytest.fixture
async def browser() -> AsyncIterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="fluxo-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--no-sandbox",  # as root
        "--headless=new",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = await asyncio.to_thread(
        webdriver.Chrome, options=options, service=Service(CHROMEDRIVER)
    )
    try:
        yield driver
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)
