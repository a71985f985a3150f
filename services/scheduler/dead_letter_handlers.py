"""The operator's dead-letter endpoints: find a dead letter, fix it, re-drive it once."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, response_schema
from marshmallow import Schema, fields

from ..common.contracts import ManualProductSchema
from ..common.docs import BODY_ERRORS, UNAUTHORIZED, UNAVAILABLE, error
from ..common.errors import ApiError
from ..common.http import json_response, read_json
from ..common.kafka import OFFSET_MAX, PARTITION_MAX
from .keys import REDRIVER
from .redrives import Redrive

routes = web.RouteTableDef()


class RedriveBodySchema(Schema):
    value = fields.Nested(
        ManualProductSchema,
        required=True,
        metadata={"description": "The corrected input record; its productId is its key."},
    )


class RedriveResultSchema(Schema):
    entry = fields.String(
        metadata={
            "description": "The original source coordinates, topic/partition/offset.",
            "example": "cadastro-produtos/0/12",
        }
    )
    attempt = fields.Integer(metadata={"example": 1})
    corrected = fields.Boolean()
    topic = fields.String(metadata={"example": "cadastro-produtos"})
    partition = fields.Integer(metadata={"description": "Where the re-driven record went."})
    offset = fields.Integer()


def position(request: web.Request, name: str, maximum: int) -> int:
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()) or int(text) > maximum:
        raise ApiError(
            422, "The request is invalid.", fields={name: [f"Must be between 0 and {maximum}."]}
        )
    return int(text)


def bearer(request: web.Request) -> str:
    """The token the request was let in with (the auth middleware checked it)."""
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


POSITION = [
    {
        "in": "path",
        "name": "partition",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": PARTITION_MAX},
        "description": "A partition of the dead-letter topic.",
    },
    {
        "in": "path",
        "name": "offset",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX},
        "description": "Any dead-letter position of the entry.",
    },
]


@routes.post("/dead-letters/{partition}/{offset}/redrive")
@docs(
    tags=["dead letters"],
    summary="Re-drive one dead letter to cadastro-produtos, once per attempt",
    description='Without a body, the record is re-driven as it is; with {"value": ...}, the '
    "corrected record (its productId is the new key). Either is validated first, as the "
    "consumer validates: 422 naming the fields, and nothing is produced, when it is still "
    "invalid. The record goes back with its original key, headers (less dlq-*) and "
    "timestamp, plus redrive-of (its original source coordinates), redrive-attempt and "
    "redrive-corrected; the API orders it by those original coordinates. Across every "
    "scheduler, each attempt of an entry is re-driven once: 409 when another request did.",
    parameters=POSITION,
    requestBody={
        "required": False,
        "content": {
            "application/json": {
                "schema": RedriveBodySchema,
                "example": {
                    "value": {
                        "productId": "12369",
                        "productName": "Nome do Produto",
                        "productDescription": "Descrição do Produto",
                        "price": 100.0,
                        "currency": "BRL",
                        "stockQuantity": 50,
                        "category": "Categoria do Produto",
                    }
                },
            }
        },
    },
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        404: error("No dead letter at this position."),
        409: error("This attempt of the entry was re-driven by another request already."),
        422: error(
            "The position is malformed, or the record (as it is or corrected) is still "
            "invalid: every bad field is named; nothing was produced."
        ),
        **UNAVAILABLE,
    },
)
@response_schema(RedriveResultSchema, 200)
async def redrive_one(request: web.Request) -> web.Response:
    partition = position(request, "partition", PARTITION_MAX)
    offset = position(request, "offset", OFFSET_MAX)
    value: Any = None
    corrected = False
    if request.can_read_body:
        body = await read_json(request)
        if not isinstance(body, dict) or "value" not in body:
            raise ApiError(
                422,
                "The request is invalid.",
                fields={"value": ['Send {"value": <the corrected record>}, or no body.']},
            )
        unknown = sorted(key for key in body if key != "value")
        if unknown:
            raise ApiError(
                422, "The request is invalid.", fields={key: ["Unknown field."] for key in unknown}
            )
        value, corrected = body["value"], True
    result = await request.app[REDRIVER].redrive(
        Redrive(partition, offset, value, corrected), bearer(request)
    )
    return json_response(result)
