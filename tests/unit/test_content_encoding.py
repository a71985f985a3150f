"""A body's Content-Encoding: decoded completely, or refused with the status that says why."""

from __future__ import annotations

import gzip
import zlib

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from services.common.content_encoding import decode, encoding_of
from services.common.errors import ApiError

BODY = b'{"productId": "12369", "price": 100.0}'


def refusal(call: object, *args: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Encoding": "identity"}, None),
        ({"Content-Encoding": "gzip"}, "gzip"),
        ({"Content-Encoding": " GZip "}, "gzip"),
        ({"Content-Encoding": "x-gzip"}, "x-gzip"),
        ({"Content-Encoding": "deflate"}, "deflate"),
    ],
)
def test_one_supported_encoding_is_named(headers: dict[str, str], expected: str | None) -> None:
    assert encoding_of(make_mocked_request("POST", "/", headers=headers)) == expected


@pytest.mark.parametrize(
    "values",
    [["gzip, gzip"], ["gzip", "gzip"], ["gzip, identity"], ["br"], ["compress"], ["zstd"]],
)
def test_a_stacked_repeated_or_unknown_encoding_is_415(values: list[str]) -> None:
    headers = CIMultiDict(("Content-Encoding", value) for value in values)
    request = make_mocked_request("POST", "/", headers=headers)

    assert refusal(encoding_of, request).status == 415


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("gzip", gzip.compress(BODY[:10]) + gzip.compress(BODY[10:])),  # two members
        ("deflate", zlib.compress(BODY)),
    ],
)
def test_a_well_encoded_body_decodes_to_its_end(coding: str, body: bytes) -> None:
    assert decode(body, coding, limit=1024) == BODY


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", BODY),  # not gzip at all
        ("gzip", gzip.compress(BODY)[:-4]),  # the trailer cut off
        ("gzip", gzip.compress(BODY)[:20]),  # cut mid-stream
        ("gzip", gzip.compress(BODY) + b"trailing"),
        ("deflate", zlib.compress(BODY)[:-1]),
        ("deflate", zlib.compress(BODY) + zlib.compress(BODY)),
        ("deflate", b""),
    ],
)
def test_a_body_that_does_not_decode_to_its_end_is_400(coding: str, body: bytes) -> None:
    error = refusal(decode, body, coding, 1024)

    assert (error.status, error.message) == (400, f"The body does not decode as {coding}.")


def test_a_body_that_inflates_past_the_limit_is_413() -> None:
    bomb = gzip.compress(b" " * 10_000_000)

    assert len(bomb) < 20_000
    assert refusal(decode, bomb, "gzip", 1024 * 1024).status == 413
    assert decode(gzip.compress(b" " * 1024), "gzip", 1024) == b" " * 1024
