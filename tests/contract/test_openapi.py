"""The OpenAPI documents are valid, and both running services answer as they say.

Both services run in-process against the real Kafka and PostgreSQL (the integration
fixtures); schemathesis, as a separate process, fuzzes every documented operation with a
fixed seed, valid and invalid data, and every check named below.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from services.common.contracts import TIMESTAMP_PATTERN, documented
from services.common.docs import OPENAPI_VERSION

from ..helpers import ROOT, TOKEN, auth, encode, eventually, manual_record, produce, unique

Client = TestClient[web.Request, web.Application]

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
)
SEED = 20261130
EXAMPLES_PER_OPERATION = 100
RUN_TIMEOUT = 600
BODY_STATUSES = {"400", "401", "413", "415", "422"}


async def spec_of(client: Client) -> dict[str, Any]:
    response = await client.get("/docs/swagger.json")
    assert response.status == 200
    spec: dict[str, Any] = await response.json()
    return spec


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


def assert_documents_every_answer(spec: dict[str, Any], statuses: dict[str, set[str]]) -> None:
    validate(spec)  # openapi-spec-validator: raises on the first error
    assert spec["openapi"] == OPENAPI_VERSION
    # Any method a path does not take: 405, with Allow.
    not_allowed = spec["components"]["responses"]["MethodNotAllowed"]
    assert "Allow" in not_allowed["headers"]
    assert not_allowed["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    found = operations(spec)
    assert set(found) == set(statuses), "documented operations"
    for label, operation in found.items():
        documented_statuses = set(operation["responses"])
        assert documented_statuses == statuses[label], label
        for status, answer in operation["responses"].items():
            assert "X-Trace-Id" in answer.get("headers", {}), f"{label} {status}"
        names = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
        assert ("header", "traceparent") in names, label
        public = operation.get("security") == []
        assert public == ("401" not in documented_statuses), f"{label}: security and 401"
    text = json.dumps(spec)
    for pattern in re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', text):
        value = json.loads(pattern)
        assert value.startswith("^") and value.endswith("$"), f"{value} is not matched whole"
        assert "\\Z" not in value and "(?" not in value, f"{value} is not ECMA 262"


async def test_the_api_document_is_valid_and_lists_every_answer(api: Client) -> None:
    body = BODY_STATUSES | {"503"}
    assert_documents_every_answer(
        await spec_of(api),
        {
            "POST /produto/manual": body | {"202"},
            "POST /produto/scheduler": body | {"200", "201"},
            "POST /produto/scheduler/batch": body | {"200"},
            "GET /produtos/{id}": {"200", "401", "404", "503"},
            "GET /produtos": {"200", "401", "422", "503"},
            "GET /health": {"200"},
            "GET /ready": {"200", "503"},
            "GET /metrics": {"200"},
        },
    )


async def test_the_scheduler_document_is_valid_and_lists_every_answer(
    scheduler: Client,
) -> None:
    spec = await spec_of(scheduler)
    assert_documents_every_answer(
        spec,
        {
            "GET /status": {"200", "401"},
            "GET /status/flow": {"200", "401"},
            "POST /consumer/pause": {"200", "401"},
            "POST /consumer/resume": {"200", "401"},
            "POST /consumer/replay": BODY_STATUSES | {"200", "503"},
            "POST /produto/transform": BODY_STATUSES | {"200"},
            "GET /dead-letters": {"200", "401", "422", "503"},
            "POST /dead-letters/redrive": BODY_STATUSES | {"200", "202", "503"},
            "GET /dead-letters/jobs/{id}": {"200", "401", "404"},
            "DELETE /dead-letters/jobs/{id}": {"200", "401", "404"},
            "POST /dead-letters/{partition}/{offset}/redrive": BODY_STATUSES
            | {"200", "404", "409", "503"},
            "GET /health": {"200"},
            "GET /ready": {"200", "503"},
            "GET /metrics": {"200"},
        },
    )
    transform = spec["paths"]["/produto/transform"]["post"]
    (timestamp,) = (p for p in transform["parameters"] if p["name"] == "timestamp")
    assert timestamp["schema"]["pattern"] == documented(TIMESTAMP_PATTERN)
    assert "FUTURE_TIMESTAMP_TOLERANCE_SECONDS" in timestamp["description"]


async def fuzz(client: Client, name: str, tmp_path: Path) -> str:
    """Run schemathesis against a running service; returns its summary, fails on a finding."""
    server: TestServer = client.server  # type: ignore[assignment]
    report = tmp_path / f"{name}.junit.xml"
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        str(server.make_url("/docs/swagger.json")),
        "--checks",
        ",".join(CHECKS),
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"schemathesis did not finish within {RUN_TIMEOUT}s") from None
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"schemathesis found problems in the {name}:\n{text}"
    summary = text[text.rfind("SUMMARY") :] if "SUMMARY" in text else text[-2000:]
    print(f"schemathesis, {name}:\n{summary}")
    return summary


async def test_the_api_answers_as_its_document_says(api: Client, tmp_path: Path) -> None:
    summary = await fuzz(api, "API", tmp_path)
    assert "Selected: 8/8" in summary and "Tested: 8" in summary, summary


async def test_the_scheduler_answers_as_its_document_says(
    scheduler: Client, api: Client, scheduler_config: Any, tmp_path: Path
) -> None:
    summary = await fuzz(scheduler, "scheduler", tmp_path)
    assert "Selected: 14/14" in summary and "Tested: 14" in summary, summary

    # The fuzzer paused and moved the consumer: resume it, go back to the present, and see a
    # new record go all the way through.
    assert (await scheduler.post("/consumer/resume", headers=auth())).status == 200
    now = {"timestamp": "2020-01-01T00:00:00Z"}
    replayed = await scheduler.post("/consumer/replay", json=now, headers=auth())
    assert replayed.status == 200, await replayed.text()
    product_id = unique("after-fuzz")
    await produce(
        scheduler_config.kafka.topic_cadastro,
        [(product_id.encode(), encode(manual_record(product_id)))],
    )

    async def persisted() -> bool:
        response = await api.get(f"/produtos/{product_id}", headers=auth())
        return response.status == 200

    await eventually(persisted, within=30, what=f"{product_id} persisted after the fuzzing")
