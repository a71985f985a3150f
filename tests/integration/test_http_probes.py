"""What a slow, odd or hostile client gets: raw-socket probes, each answered with its status,
the JSON error envelope and ``X-Trace-Id``; slow clients that do not slow down the others;
the connection cap.

The services run with short HTTP timeouts here (the defaults are 10 s and 30 s) so that the
probes that wait for a timeout take about a second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import re
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from services.api.app import create_app as create_api
from services.api.config import ApiConfig
from services.common import jsoncodec
from services.common.config import HttpConfig

from ..helpers import TOKEN, RawAnswer, encode, raw_request, transformed_record, wait_ready

Client = TestClient[web.Request, web.Application]

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
TEST_HTTP = HttpConfig(header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT)
TRACE_ID = re.compile(r"[0-9a-f]{32}")

RECORD = encode(transformed_record("probe-1"))
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


def post(body: bytes, *headers: bytes, path: bytes = b"/produto/scheduler") -> bytes:
    """A POST of ``body`` with a token and ``headers``, its Content-Length right."""
    head = b"".join(header + b"\r\n" for header in headers)
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + AUTH
        + b"Content-Type: application/json\r\n" + head
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


def get(*headers: bytes, target: bytes = b"/health") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers)


def framed(header: bytes, body: bytes = b"") -> bytes:
    """A POST whose body is framed by ``header`` alone (no Content-Length)."""
    return b"POST /produto/scheduler HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n" + body


def claiming(length: bytes, body: bytes = b"") -> bytes:
    """A POST whose Content-Length says ``length``, followed by ``body``."""
    return post(b"").replace(b"Content-Length: 0", b"Content-Length: " + length) + body


CHUNKED = b"Transfer-Encoding: chunked"
GZIP = b"Content-Encoding: gzip"

# Probe name, the bytes sent, the status answered (then the connection is left to the server).
PROBES: list[tuple[str, bytes, int]] = [
    # Content encodings.
    ("gzip label on a plain body", post(b'{"a":1}', GZIP), 400),
    ("gzip, gzip on a plain body", post(b'{"a":1}', b"Content-Encoding: gzip, gzip"), 415),
    ("gzip twice, two headers", post(gzip.compress(gzip.compress(RECORD)), GZIP, GZIP), 415),
    ("truncated gzip", post(gzip.compress(RECORD)[:-8], GZIP), 400),
    ("unknown encoding", post(RECORD, b"Content-Encoding: compress"), 415),
    ("gzip that decodes", post(gzip.compress(b"[]"), GZIP), 422),
    # Expectations and HTTP aiohttp's parser refuses.
    ("Expect: bogus", post(RECORD, b"Expect: bogus"), 417),
    ("Content-Length and Transfer-Encoding", post(b"0\r\n\r\n", CHUNKED), 400),
    ("duplicate Content-Length", post(b"{}", b"Content-Length: 2"), 400),
    ("bare LF", b"GET /health HTTP/1.1\nHost: x\n\n", 400),
    ("folded header", get(b"X-A: a", b" b") + b"\r\n", 400),
    ("over-long URL", get(target=b"/health?" + b"a" * 9000) + b"\r\n", 400),
    ("over-long header", get(b"X-Big: " + b"a" * 9000) + b"\r\n", 400),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n", 400),
    ("bad method", b"G(T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    # Request smuggling (refused already; kept refused).
    ("chunked, then identity", framed(CHUNKED + b", identity", b"0\r\n\r\n"), 400),
    ("xchunked", framed(b"Transfer-Encoding: xchunked"), 400),
    ("space before the colon", framed(b"Transfer-Encoding : chunked", b"0\r\n\r\n"), 400),
    ("chunk size with a sign", framed(CHUNKED, b"+2\r\n{}\r\n0\r\n\r\n"), 400),
    ("negative Content-Length", claiming(b"-1"), 400),
    # Headers that would make the token or the body ambiguous.
    ("two Authorization headers", post(RECORD, b"Authorization: Bearer other"), 400),
    # Limits.
    ("Content-Length of 1 TB", claiming(b"1000000000000", b"{"), 413),
    ("partial headers", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: ", 408),
    ("a body shorter than its Content-Length", post(RECORD)[:-10], 408),
]  # fmt: skip


@pytest.fixture
async def probed(api_config: ApiConfig, aiohttp_client: AiohttpClient) -> Client:
    """The API with short HTTP timeouts, ready."""
    client = await aiohttp_client(create_api(dataclasses.replace(api_config, http=TEST_HTTP)))
    await wait_ready(client, "API")
    return client


def envelope_problem(answer: RawAnswer, status: int) -> str | None:
    """What is wrong with ``answer`` as the answer ``status`` in the envelope, or None."""
    if answer.status != status:
        return f"status {answer.status}, body {answer.body[:200]!r}"
    if not TRACE_ID.fullmatch(answer.headers.get("x-trace-id", "")):
        return f"X-Trace-Id {answer.headers.get('x-trace-id')!r}"
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return f"Content-Type {answer.headers.get('content-type')!r}"
    error = jsoncodec.loads(answer.body).get("error", {})
    if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        return f"body {answer.body[:200]!r}"
    return None


async def test_every_probe_is_answered_with_its_status_the_envelope_and_a_trace_id(
    probed: Client,
) -> None:
    async def probe(request: bytes) -> RawAnswer:
        return await raw_request(probed, request, within=BODY_TIMEOUT + 2)

    # At once: the rows that wait for a timeout then take about as long as one.
    answers = await asyncio.gather(*(probe(request) for _, request, _ in PROBES))

    problems = {
        name: problem
        for (name, _, status), answer in zip(PROBES, answers, strict=True)
        if (problem := envelope_problem(answer, status)) is not None
    }
    assert problems == {}


async def test_headers_sent_one_byte_a_second_are_cut_off_by_the_header_timeout(
    probed: Client,
) -> None:
    reader, writer = await asyncio.open_connection(probed.host, probed.port)
    started = time.monotonic()
    try:
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
            writer.write(bytes([byte]))
            if reader.at_eof() or time.monotonic() - started > HEADER_TIMEOUT + 2:
                break
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.3)
            except TimeoutError:
                continue
            break
        else:
            pytest.fail("the server took every header byte")
    finally:
        writer.close()
    assert b" 408 " in head.split(b"\r\n")[0], head
    assert time.monotonic() - started < HEADER_TIMEOUT + 2
