"""What both services document and answer alike: error bodies, liveness, readiness."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, response_schema
from marshmallow import Schema, fields

from .http import json_response


class ErrorBodySchema(Schema):
    code = fields.String(metadata={"example": "validation_failed"})
    message = fields.String(metadata={"example": "The record is invalid."})
    fields_ = fields.Dict(
        data_key="fields",
        metadata={"example": {"price": ["Must be greater than or equal to 0."]}},
    )


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)


class ProbeSchema(Schema):
    status = fields.String(metadata={"example": "ready"})
    checks = fields.Dict(keys=fields.String(), values=fields.Boolean())


@docs(tags=["probes"], summary="Liveness: the process answers", security=[])
@response_schema(ProbeSchema, 200)
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def readiness(checks: dict[str, bool], required: Iterable[str], **more: Any) -> web.Response:
    """200 when every required check passed, else 503; all checks are shown, and ``more``."""
    healthy = all(checks[name] for name in required)
    return json_response(
        {"status": "ready" if healthy else "unavailable", "checks": checks, **more},
        status=200 if healthy else 503,
    )


def ready_docs(summary: str, unavailable: str, schema: type[Schema] = ProbeSchema) -> Any:
    """The documentation of a service's ``GET /ready``."""

    def document(handler: Any) -> Any:
        handler = response_schema(schema, 200)(handler)
        return docs(
            tags=["probes"],
            summary=summary,
            security=[],
            responses={503: {"schema": schema, "description": unavailable}},
        )(handler)

    return document
