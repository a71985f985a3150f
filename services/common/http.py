"""HTTP plumbing both services use: JSON errors, bearer auth, JSON bodies, routes."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from marshmallow import ValidationError

from . import jsoncodec
from .contracts import field_errors
from .errors import ApiError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths served without a token: probes, metrics, the documentation (OpenAPI and AsyncAPI) and
# the status page's HTML (which asks for the token to read the protected endpoints).
PUBLIC_PREFIXES = ("/health", "/ready", "/metrics", "/docs", "/static/swagger", "/asyncapi")
PUBLIC_PATHS = frozenset({"/"})


def invalid(error: ValidationError) -> ApiError:
    return ApiError(422, "The record is invalid.", fields=field_errors(error))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsoncodec.dumps(data), status=status, content_type="application/json")


# Seconds a client is asked to wait before trying a 503 again.
RETRY_AFTER = "1"


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields is not None:
        body["fields"] = error.fields
    response = json_response({"error": body}, status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    elif error.status == 503:  # a dependency is down: most outages here last seconds
        response.headers["Retry-After"] = RETRY_AFTER
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(ApiError(exc.status, exc.reason))
        if "Allow" in exc.headers:  # a 405 names the methods the resource answers
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        trace = request.get("trace")
        log.exception(
            "unexpected error on %s %s",
            request.method,
            route_template(request),
            extra={"trace_id": trace.trace_id if trace else None},
        )
        return error_response(ApiError(500, "Internal error.", code="internal"))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_auth(tokens: Sequence[str]) -> Middleware:
    """Require ``Authorization: Bearer <token>`` with any of ``tokens`` outside the public paths.

    The given token is compared with every accepted one, each in constant time (on
    digests of equal length), so neither the time taken nor the token that matched tells
    anything about the accepted tokens.
    """
    expected = [_digest(token) for token in tokens]

    def authorized(header: str) -> bool:
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = _digest(given.strip())
        matches = [hmac.compare_digest(digest, token) for token in expected]
        return any(matches)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Two tokens: which one decides would differ between this service and a proxy.
        if len(request.headers.getall("Authorization", ())) > 1:
            raise ApiError(400, "Send one Authorization header.")
        if (
            request.path not in PUBLIC_PATHS
            and not request.path.startswith(PUBLIC_PREFIXES)
            and not authorized(request.headers.get("Authorization", ""))
        ):
            raise ApiError(401, "A valid 'Authorization: Bearer <token>' header is required.")
        return await handler(request)

    return auth_middleware


async def read_json(request: web.Request) -> Any:
    """The request's JSON body: 415 when not JSON (or not UTF-8), 413 when too large, 400
    when malformed."""
    if request.content_type != "application/json":
        raise ApiError(415, "Send the body as 'Content-Type: application/json'.")
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise ApiError(
            415, f"The charset {charset[:40]!r} is not supported; send the body as UTF-8."
        )
    body = await request.read()  # raises 413 past the application's client_max_size
    try:
        return jsoncodec.loads_exact(body)
    except jsoncodec.JSONDecodeError as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None


def route_template(request: web.Request) -> str:
    """The route a request matched, e.g. ``/produtos/{id}``; never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
