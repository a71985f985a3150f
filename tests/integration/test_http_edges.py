"""Access and the edges of HTTP: tokens, rotation, what is logged, and the answers aiohttp
itself gives (405, malformed requests, oversized headers, charsets), all in the JSON envelope."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from services.api.app import create_app as create_api
from services.api.config import ApiConfig
from services.common import jsoncodec
from services.common.config import KafkaConfig
from services.scheduler.app import create_app as create_scheduler
from services.scheduler.config import SchedulerConfig

from ..helpers import (
    TOKEN,
    auth,
    flows,
    raw_request,
    wait_ready,
)

Client = TestClient[web.Request, web.Application]

NEW_TOKEN = "next-3a1f-token"
OLD_TOKEN = "previous-9c2e-token"


async def test_every_protected_endpoint_wants_a_bearer_token_and_says_so(api: Client) -> None:
    for headers in ({}, auth("wrong-token"), {"Authorization": TOKEN}, {"Authorization": ""}):
        response = await api.get("/produtos", headers=headers)

        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await response.json())["error"]["code"] == "unauthorized"


async def test_the_scheme_is_case_insensitive(api: Client) -> None:
    response = await api.get("/produtos", headers={"Authorization": f"bearer {TOKEN}"})

    assert response.status == 200


async def test_every_token_of_api_tokens_is_accepted_during_a_rotation(
    api_config: ApiConfig, aiohttp_client: AiohttpClient
) -> None:
    config = dataclasses.replace(api_config, api_tokens=(NEW_TOKEN, OLD_TOKEN))
    client = await aiohttp_client(create_api(config))

    await wait_ready(client, "API")

    assert (await client.get("/produtos", headers=auth(NEW_TOKEN))).status == 200
    assert (await client.get("/produtos", headers=auth(OLD_TOKEN))).status == 200
    assert (await client.get("/produtos", headers=auth(TOKEN))).status == 401
    # A prefix or an extension of a valid token is not valid.
    assert (await client.get("/produtos", headers=auth(NEW_TOKEN[:-1]))).status == 401
    assert (await client.get("/produtos", headers=auth(NEW_TOKEN + "x"))).status == 401


async def test_a_token_is_never_logged(api: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    await api.get("/produtos", headers=auth())
    await api.get("/produtos/does-not-exist", headers=auth())
    await api.post("/produto/manual", data=b"{", headers={**auth(), "Content-Type": "text/x"})
    await api.get("/produtos", headers=auth("a-wrong-but-secret-token"))
    await raw_request(
        api, b"GET /produtos HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\x01\r\n\r\n"
    )

    assert any(record.name == "aiohttp.access" for record in caplog.records)  # logging works
    assert TOKEN not in caplog.text
    assert "a-wrong-but-secret-token" not in caplog.text
    assert TOKEN not in repr(api.app)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_405_names_the_allowed_methods(api: Client, method: str) -> None:
    response = await api.request(method, "/produto/manual", headers=auth())

    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_a_malformed_header_is_a_json_400_logged_as_one_warning_line(
    api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    status, headers, body = await raw_request(
        api, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n"
    )

    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert jsoncodec.loads(body)["error"]["code"] == "bad_request"
    refused = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in refused] == [(logging.WARNING, None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_64_kb_header_is_a_json_400(api: Client) -> None:
    status, headers, body = await raw_request(
        api, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    )

    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = jsoncodec.loads(body)["error"]
    assert error["code"] == "bad_request"
    assert "too long" in error["message"]


async def test_a_body_in_another_charset_than_utf8_is_415_naming_it(api: Client) -> None:
    response = await api.post(
        "/produto/manual",
        data='{"productName": "Descrição"}'.encode("latin-1"),
        headers={**auth(), "Content-Type": "application/json; charset=latin-1"},
    )

    assert response.status == 415
    error = (await response.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert "'latin-1'" in error["message"]


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
async def test_utf8_may_be_named_as_the_charset(api: Client, charset: str) -> None:
    response = await api.post(
        "/produto/manual",
        data=b"[]",
        headers={**auth(), "Content-Type": f"application/json; charset={charset}"},
    )

    assert response.status == 422  # read and validated, not refused for its media type


async def test_the_scheduler_sends_its_first_token_and_accepts_all_of_its_tokens(
    api: Client,
    scheduler_config: SchedulerConfig,
    api_config: ApiConfig,
    kafka: KafkaConfig,
    aiohttp_client: AiohttpClient,
) -> None:
    # The API accepts TOKEN only; the scheduler is midway through a rotation.
    config = dataclasses.replace(scheduler_config, api_tokens=(TOKEN, NEW_TOKEN))
    scheduler = await aiohttp_client(create_scheduler(config))

    await flows(
        kafka,
        api_config.database_url,
        within=30,
        what="a record persisted with the scheduler's first token",
    )
    assert (await scheduler.get("/status", headers=auth(NEW_TOKEN))).status == 200
    assert (await scheduler.get("/status", headers=auth(OLD_TOKEN))).status == 401
