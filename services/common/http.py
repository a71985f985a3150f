"""HTTP plumbing both services use: JSON errors, bearer auth, JSON bodies, docs, metrics."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_apispec import setup_aiohttp_apispec
from marshmallow import ValidationError

from . import jsoncodec
from .contracts import field_errors

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths served without a token: probes, metrics and the documentation.
PUBLIC_PREFIXES = ("/health", "/ready", "/metrics", "/docs", "/static/swagger")

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}


class ApiError(Exception):
    """An expected failure, answered as ``{"error": {"code", "message", "fields"}}``."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, fields: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.fields = fields


class Unavailable(ApiError):
    """A dependency (database, Kafka, the API) is down; nothing was half-written."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


def invalid(error: ValidationError) -> ApiError:
    return ApiError(422, "The record is invalid.", fields=field_errors(error))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsoncodec.dumps(data), status=status, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields is not None:
        body["fields"] = error.fields
    response = json_response({"error": body}, status=error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


TRACE_HEADER = "X-Trace-Id"


def new_trace_id() -> str:
    return uuid.uuid4().hex[:16]


def trace_id(request: web.Request) -> str:
    """The request's trace id: the caller's ``X-Trace-Id``, or a new one."""
    trace: str = request["trace_id"]
    return trace


@web.middleware
async def trace_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request a trace id, logged with what it causes and echoed in the answer."""
    request["trace_id"] = request.headers.get(TRACE_HEADER, "")[:64] or new_trace_id()
    response = await handler(request)
    response.headers[TRACE_HEADER] = request["trace_id"]
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
        return error_response(ApiError(exc.status, exc.reason))
    except Exception:
        log.exception(
            "unexpected error on %s %s trace=%s",
            request.method,
            request.path,
            request.get("trace_id"),
        )
        return error_response(ApiError(500, "Internal error.", code="internal"))


def bearer_auth(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PUBLIC_PREFIXES):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise ApiError(401, "A valid 'Authorization: Bearer <token>' header is required.")
        return await handler(request)

    return auth_middleware


async def read_json(request: web.Request) -> Any:
    """The request's JSON body: 415 when not JSON, 413 when too large, 400 when malformed."""
    if request.content_type != "application/json":
        raise ApiError(415, "Send the body as 'Content-Type: application/json'.")
    body = await request.read()  # raises 413 past the application's client_max_size
    try:
        return jsoncodec.loads_exact(body)
    except jsoncodec.JSONDecodeError as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}") from None


def setup_docs(app: web.Application, title: str, description: str) -> None:
    """Swagger UI at ``/docs`` and the spec at ``/docs/swagger.json``."""
    setup_aiohttp_apispec(
        app,
        title=title,
        version="1.0.0",
        url="/docs/swagger.json",
        swagger_path="/docs",
        info={"description": description},
        securityDefinitions={
            "bearer": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Bearer token: 'Bearer <API_TOKEN>'.",
            }
        },
        security=[{"bearer": []}],
    )


class Metrics:
    """Counters and gauges rendered in the Prometheus text format."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def counter(self, name: str, help_text: str) -> None:
        self._declare(name, "counter", help_text)

    def gauge(self, name: str, help_text: str) -> None:
        self._declare(name, "gauge", help_text)

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)
        self._values.setdefault(name, {})

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._values[name]
        series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        return self._values[name].get(tuple(sorted(labels.items())), 0)

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text) in self._help.items():
            full = f"{self._prefix}_{name}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
            for labels, value in self._values[name].items():
                label_text = ",".join(f'{k}="{v}"' for k, v in labels)
                text = str(int(value)) if value == int(value) else repr(value)
                lines.append(f"{full}{{{label_text}}} {text}" if labels else f"{full} {text}")
        return "\n".join(lines) + "\n"


def metrics_handler(metrics: Metrics) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    return handler
