"""The OpenAPI 3 documents of both services: Swagger UI at ``/docs``, the spec at
``/docs/swagger.json``, written by aiohttp-apispec from the handlers' decorators.

What every operation shares is added here once: the bearer scheme, the ``traceparent``
request header, the ``X-Trace-Id`` answer header, ``/metrics``, and the error answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp_apispec import setup_aiohttp_apispec
from marshmallow import Schema

from .probes import ErrorSchema

OPENAPI_VERSION = "3.0.3"
SPEC_URL = "/docs/swagger.json"

TRACE_RESPONSE_HEADER = {
    "X-Trace-Id": {
        "description": "The trace id of this request, as its log lines show it.",
        "schema": {"type": "string"},
    }
}
TRACEPARENT = {
    "in": "header",
    "name": "traceparent",
    "required": False,
    "description": "W3C trace context of the caller; the request joins that trace. One that "
    "cannot be read is ignored and a new trace is started.",
    "schema": {"type": "string"},
}

COMMON_DESCRIPTION = (
    "\n\nEvery answer carries `X-Trace-Id`. Errors are JSON: "
    '`{"error": {"code", "message", "fields"}}`. A method that a path does not document is '
    "answered 405 with an `Allow` header and the same error body "
    "(`components.responses.MethodNotAllowed`)."
)


def error(description: str) -> dict[str, Any]:
    """A documented error answer, with the JSON error body."""
    return {"schema": ErrorSchema, "description": description}


UNAUTHORIZED = {401: error("Missing or wrong bearer token.")}
UNAVAILABLE = {503: error("A dependency is down; nothing was written.")}
# What any endpoint that reads a JSON body can answer before its own checks.
BODY_ERRORS = {
    400: error("The body is not valid JSON."),
    413: error("The body is larger than the service accepts."),
    415: error("The body is not sent as 'Content-Type: application/json'."),
    422: error("The body is invalid; every bad field is named under 'fields'."),
}


def json_body(schema: type[Schema] | dict[str, Any], example: Any = None) -> dict[str, Any]:
    """An OpenAPI 3 request body of JSON (a marshmallow schema becomes a ``$ref``)."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "in": "query",
        "name": name,
        "required": False,
        "schema": schema,
        "description": description,
    }


METHOD_NOT_ALLOWED = {
    "description": "The path does not take this method.",
    "headers": {
        "Allow": {"description": "The methods the path takes.", "schema": {"type": "string"}},
        **TRACE_RESPONSE_HEADER,
    },
    "content": {"application/json": {"schema": ErrorSchema}},
}

METRICS_PATH = {
    "get": {
        "tags": ["probes"],
        "summary": "Metrics in the Prometheus text format",
        "security": [],
        "responses": {
            "200": {
                "description": "The metrics of this process.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }
}


def setup_docs(
    app: web.Application,
    title: str,
    description: str,
    refine: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Swagger UI at ``/docs`` and the OpenAPI document at ``/docs/swagger.json``.

    ``refine`` completes the written document with what depends on the configuration.
    """
    apispec = setup_aiohttp_apispec(
        app,
        title=title,
        version="1.0.0",
        url=SPEC_URL,
        swagger_path="/docs",
        openapi_version=OPENAPI_VERSION,
        info={"description": description + COMMON_DESCRIPTION},
        security=[{"bearer": []}],
    )
    apispec.spec.components.security_scheme(
        "bearer",
        {"type": "http", "scheme": "bearer", "description": "Any of the service's API_TOKENS."},
    )
    apispec.spec.path(path="/metrics", operations=METRICS_PATH)
    apispec.spec.components.response("MethodNotAllowed", METHOD_NOT_ALLOWED)

    async def complete(app: web.Application) -> None:
        # Runs after aiohttp-apispec wrote the document from the routes (on start-up).
        complete_spec(app["swagger_dict"])
        if refine is not None:
            refine(app["swagger_dict"])

    app.on_startup.append(complete)


def complete_spec(spec: dict[str, Any]) -> None:
    """Give every operation the shared header and parameter, in place.

    aiohttp-apispec's ``docs`` also writes OpenAPI 2's ``produces`` into each operation,
    which OpenAPI 3 does not allow: the media types are in each body and answer instead.
    """
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation.pop("produces", None)
            parameters = operation.setdefault("parameters", [])
            if TRACEPARENT not in parameters:
                parameters.append(TRACEPARENT)
            for answer in operation["responses"].values():
                answer.setdefault("headers", {}).update(TRACE_RESPONSE_HEADER)
