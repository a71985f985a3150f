"""The AsyncAPI document: valid against the official AsyncAPI 3.0.0 JSON Schema (vendored, read
by jsonschema's draft-7 validator), committed as generated, compatible with the frozen event
baseline of its version, and served by the scheduler without a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft7Validator
from pytest_aiohttp import AiohttpClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from services.common.config import KafkaConfig
from services.common.contracts import EVENT_CONTENT_TYPE, EVENT_VERSION
from services.scheduler.app import create_app
from services.scheduler.asyncapi import (
    BASELINES,
    COMMITTED,
    breaking_changes,
    committed_config,
    document,
    event_contract,
    yaml_text,
)
from services.scheduler.config import SchedulerConfig
from services.scheduler.keys import CONFIG

from ..asyncapi_records import Messages
from ..helpers import (
    DLQ_HEADERS,
    ROOT,
    TOKEN,
    eventually,
    isolated_kafka,
    manual_record,
    transformed_record,
    unique,
)

SCHEMA = ROOT / "docs" / "asyncapi-schema" / "3.0.0-without-id.json"
CHANNELS = {"cadastroProdutos", "produtosPersistidos", "deadLetters", "deadLetterRedrives"}


@pytest.fixture(scope="module")
def asyncapi_schema() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def config_of(**settings: str) -> SchedulerConfig:
    return SchedulerConfig.from_env({"API_TOKEN": TOKEN, **settings})


def assert_valid(validator: Draft7Validator, doc: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:300]}" for e in validator.iter_errors(doc)]
    assert errors == [], "\n".join(errors)


def test_the_document_is_valid_asyncapi_3(asyncapi_schema: Draft7Validator) -> None:
    doc = document(committed_config())
    assert doc["asyncapi"] == "3.0.0"
    assert_valid(asyncapi_schema, doc)
    assert set(doc["channels"]) == CHANNELS
    addresses = {name: channel["address"] for name, channel in doc["channels"].items()}
    assert addresses == {
        "cadastroProdutos": "cadastro-produtos",
        "produtosPersistidos": "produtos-persistidos",
        "deadLetters": "cadastro-produtos.dlq",
        "deadLetterRedrives": "cadastro-produtos.dlq.redrives",
    }
    # Every dlq-* header the scheduler writes is required and described.
    dead = doc["components"]["messages"]["DeadLetter"]["headers"]
    assert dead["required"] == list(DLQ_HEADERS)
    assert {name for name in dead["properties"] if name.startswith("dlq-")} == set(DLQ_HEADERS)
    operations = {(o["action"], o["channel"]["$ref"]) for o in doc["operations"].values()}
    assert operations == {
        ("send", "#/channels/cadastroProdutos"),
        ("receive", "#/channels/cadastroProdutos"),
        ("send", "#/channels/produtosPersistidos"),
        ("send", "#/channels/deadLetters"),
        ("send", "#/channels/deadLetterRedrives"),
    }


def test_servers_and_security_come_from_the_settings(asyncapi_schema: Draft7Validator) -> None:
    doc = document(
        config_of(
            KAFKA_BOOTSTRAP_SERVERS="kafka-1.example:9093,kafka-2.example:9093",
            KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            KAFKA_SASL_USERNAME="fluxo",
            KAFKA_SASL_PASSWORD="secret",
            KAFKA_TOPIC_PRODUTOS_PERSISTIDOS="saida",
        )
    )
    assert_valid(asyncapi_schema, doc)
    assert [(s["host"], s["protocol"]) for s in doc["servers"].values()] == [
        ("kafka-1.example:9093", "kafka-secure"),
        ("kafka-2.example:9093", "kafka-secure"),
    ]
    assert doc["components"]["securitySchemes"]["sasl"]["type"] == "scramSha256"
    assert all(s["security"] for s in doc["servers"].values())
    assert doc["channels"]["produtosPersistidos"]["address"] == "saida"
    assert "secret" not in json.dumps(doc)

    plain = document(config_of())
    assert [s["protocol"] for s in plain["servers"].values()] == ["kafka"]
    assert "securitySchemes" not in plain["components"]


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = yaml_text(document(committed_config()))
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        f"{COMMITTED.relative_to(ROOT)} differs from what the code generates: "
        "run `make docs` and commit the result"
    )
    assert yaml.safe_load(generated) == json.loads(json.dumps(document(committed_config())))


def test_the_event_schema_is_compatible_with_the_baseline_of_its_version() -> None:
    baseline_file = BASELINES / f"produtos-persistidos-v{EVENT_VERSION}.json"
    assert baseline_file.is_file(), (
        f"no frozen baseline {baseline_file} for version {EVENT_VERSION}"
    )
    baseline = json.loads(baseline_file.read_text(encoding="utf-8"))
    current = event_contract(document(committed_config()))
    assert current["content-type"] == baseline["content-type"] == EVENT_CONTENT_TYPE
    problems = breaking_changes(baseline["payload"], current["payload"]) + [
        f"header {p}" for p in breaking_changes(baseline["headers"], current["headers"])
    ]
    assert problems == [], (
        f"the event on produtos-persistidos would break its consumers: {problems}. A breaking "
        "change is a new version (EVENT_VERSION, with a new baseline) published beside this "
        "one for a while (docs/topics.md)"
    )


def test_the_examples_validate_against_their_messages() -> None:
    doc = document(committed_config())
    messages = Messages(doc)
    event_headers = [("event-id", b"7"), ("content-type", EVENT_CONTENT_TYPE.encode())]
    persisted = json.dumps(transformed_record("p-1")).encode()
    assert messages.problems("ProductPersisted", event_headers, persisted) == []
    assert messages.problems("ManualProduct", [], json.dumps(manual_record("p-1")).encode()) == []
    for name, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            headers = [(k, v.encode()) for k, v in example.get("headers", {}).items()]
            value = json.dumps(example["payload"]).encode()
            assert messages.problems(name, headers, value) == [], (name, example)
    # What the schemas refuse: a wrong type, a missing header, a price finer than cents.
    assert messages.problems(
        "ProductPersisted", event_headers[:1], json.dumps(transformed_record("p", id=5)).encode()
    ) == [
        "header []: 'content-type' is a required property",
        "value ['id']: 5 is not of type 'string'",
    ]
    assert (
        messages.problems("ManualProduct", [], json.dumps(manual_record("p", price=0.29)).encode())
        == []
    )
    assert messages.problems("ManualProduct", [], b'{"price": 0.295}')


@pytest.fixture
async def scheduler_alone(
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The scheduler with topics of its own, and no API behind it (docs need none)."""
    kafka: KafkaConfig = isolated_kafka()
    config = SchedulerConfig(
        api_tokens=(TOKEN,), api_url="http://127.0.0.1:9", kafka=kafka, consumer_group=unique("g")
    )
    client = await aiohttp_client(create_app(config))

    async def connected() -> bool:
        # Its Kafka clients up (only the API is missing), so that none is stopped half-started.
        checks = (await (await client.get("/ready")).json())["checks"]
        return bool(checks["kafka"] and checks["consumer"])

    await eventually(connected, within=60, what="the scheduler connecting to Kafka")
    yield client


async def test_the_scheduler_serves_the_document_without_a_token(
    scheduler_alone: TestClient[web.Request, web.Application],
) -> None:
    response = await scheduler_alone.get("/asyncapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    served = await response.json()
    kafka = scheduler_alone.app[CONFIG].kafka
    assert served["channels"]["produtosPersistidos"]["address"] == kafka.topic_persistidos

    page = await scheduler_alone.get("/asyncapi")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert 'src="asyncapi/index.js"' in html and "asyncapi.json" in html
    script = await scheduler_alone.get("/asyncapi/index.js")
    assert script.status == 200 and len(await script.read()) > 1_000_000
    assert (await scheduler_alone.get("/asyncapi/LICENSE")).status == 200

    swagger = await (await scheduler_alone.get("/docs/swagger.json")).json()
    assert "(/asyncapi)" in swagger["info"]["description"]


def test_no_page_or_script_loads_anything_from_outside() -> None:
    page = (ROOT / "services/scheduler/static/asyncapi/index.html").read_text()
    assert "http://" not in page and "https://" not in page


async def test_the_page_renders_every_channel_and_message_offline(
    scheduler_alone: TestClient[web.Request, web.Application], browser: WebDriver
) -> None:
    server: TestServer = scheduler_alone.server  # type: ignore[assignment]
    origin = str(server.make_url("")).rstrip("/")
    doc = document(scheduler_alone.app[CONFIG])
    await asyncio.to_thread(browser.get, origin + "/asyncapi")

    def text() -> str:
        return str(browser.find_element(By.TAG_NAME, "body").text)

    async def rendered() -> str | None:
        shown = await asyncio.to_thread(text)
        return shown if all(name in shown for name in doc["operations"]) else None

    # Each operation shown (by its id) means the component parsed the document it fetched.
    shown = await eventually(
        rendered, within=30, what="the AsyncAPI page showing every operation", every=0.2
    )
    for channel in doc["channels"].values():
        assert channel["address"] in shown
        for message in channel["messages"].values():
            name = doc["components"]["messages"][message["$ref"].rsplit("/", 1)[-1]]["name"]
            assert f"Message ID{name}" in shown.replace("\n", "")
    # Nothing came from outside the scheduler: the page works with no network.
    resources = await asyncio.to_thread(
        browser.execute_script,
        "return performance.getEntriesByType('resource').map((e) => e.name)",
    )
    assert resources and all(url.startswith(origin) for url in resources), resources
