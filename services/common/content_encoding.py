"""Request bodies sent with a ``Content-Encoding``: decoded completely, or refused.

aiohttp's own decoding (turned off in ``service_app``) answered a body labelled gzip that
is not gzip with a 500, read ``gzip, gzip`` as no encoding at all, and took a truncated
gzip body for whatever part of it decompressed. Here a body is decoded in one piece before
any handler sees it: 400 when it does not decode to its end, 413 when it decodes past the
body limit (a small body may inflate a thousandfold), 415 for an encoding not supported,
named twice or stacked.
"""

from __future__ import annotations

import zlib

from aiohttp import hdrs, web

from .errors import ApiError
from .http import Handler

# zlib window bits of each supported encoding: gzip's header and trailer, zlib's (RFC 1950,
# what HTTP calls "deflate").
WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
SUPPORTED = ", ".join(["identity", *WBITS])


def encoding_of(request: web.BaseRequest) -> str | None:
    """The one encoding a request's body carries (None for none or ``identity``)."""
    values = request.headers.getall(hdrs.CONTENT_ENCODING, [])
    codings = [coding.strip().lower() for value in values for coding in value.split(",")]
    codings = [coding for coding in codings if coding]
    if not codings:
        return None
    if len(codings) > 1:
        raise ApiError(415, f"Send the body in one Content-Encoding at most ({SUPPORTED}).")
    coding = codings[0]
    if coding == "identity":
        return None
    if coding not in WBITS:
        raise ApiError(
            415, f"The Content-Encoding {coding[:40]!r} is not supported; use one of {SUPPORTED}."
        )
    return coding


def decode(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` decoded as ``coding``: every member of it, to its end, at most ``limit`` bytes."""
    undecodable = ApiError(400, f"The body does not decode as {coding}.")
    decoded = bytearray()
    rest = body
    while True:
        decompressor = zlib.decompressobj(WBITS[coding])
        try:
            decoded += decompressor.decompress(rest, limit + 1 - len(decoded))
        except zlib.error:
            raise undecodable from None
        if len(decoded) > limit:
            raise ApiError(413, f"The body decodes to more than {limit} bytes.")
        if not decompressor.eof:  # cut short
            raise undecodable
        rest = decompressor.unused_data
        if not rest:
            return bytes(decoded)
        if coding == "deflate":  # one zlib stream only; gzip may hold several members
            raise undecodable


@web.middleware
async def content_encoding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    coding = encoding_of(request)
    if coding is not None and request.body_exists:
        body = await request.read()  # 413 past client_max_size, as sent
        # Every later read of the body (request.read(), .json(), read_json) returns what is
        # cached here: the decoded body.
        request._read_bytes = decode(body, coding, request.client_max_size)
    return await handler(request)
