"""The scheduler's endpoints: probes, status and the operator's controls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..common import probes
from ..common.contracts import (
    ManualProductSchema,
    TransformedProductSchema,
    UtcDateTime,
    load_manual,
)
from ..common.http import ApiError, invalid, json_response, read_json
from ..common.kafka import OFFSET_MAX, PARTITION_MAX
from ..common.transform import transform
from .consumer import Replay, ReplayRefused
from .keys import API, CONSUMER, DEAD_LETTERS

routes = web.RouteTableDef()


class PartitionStatusSchema(Schema):
    topic = fields.String()
    partition = fields.Integer()
    committed = fields.Integer(allow_none=True)
    end = fields.Integer(allow_none=True)
    lag = fields.Integer(allow_none=True)


class StatusSchema(Schema):
    state = fields.String(metadata={"example": "running"})
    group = fields.String(metadata={"example": "fluxo-scheduler"})
    topic = fields.String(metadata={"example": "cadastro-produtos"})
    partitions = fields.List(fields.Nested(PartitionStatusSchema))
    counters = fields.Dict(keys=fields.String(), values=fields.Integer())


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Kafka timestamps count milliseconds from 1970 on.
SINCE_EPOCH = validate.Range(min=EPOCH, error="Must be 1970-01-01T00:00:00Z or later.")
# How long a replay waits for the consumer loop (busy retrying a batch, say).
REPLAY_WAIT = 30.0


class ReplaySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    timestamp = UtcDateTime(
        validate=SINCE_EPOCH,
        metadata={
            "description": "Replay records from this instant (1970 or later).",
            "example": "2024-06-12T12:00:00Z",
        },
    )
    offsets = fields.Dict(
        keys=fields.Integer(strict=False, validate=validate.Range(min=0, max=PARTITION_MAX)),
        values=fields.Integer(strict=True, validate=validate.Range(min=0, max=OFFSET_MAX)),
        validate=validate.Length(min=1, error="Name at least one partition."),
        metadata={
            "description": "Partition number to offset, for partitions this instance holds; "
            "each offset between the partition's first and its end offset.",
            "example": {"0": 0},
        },
    )

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("timestamp" in data) == ("offsets" in data):
            raise ValidationError("Give either 'timestamp' or 'offsets'.", "_schema")


class TransformQuerySchema(Schema):
    timestamp = UtcDateTime(validate=SINCE_EPOCH)


class ReplayResultSchema(Schema):
    positions = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"example": {"0": 0, "1": 0}}
    )


REPLAY = ReplaySchema()
TRANSFORM_QUERY = TransformQuerySchema()


routes.get("/health", allow_head=False)(probes.health)


@routes.get("/ready", allow_head=False)
@probes.ready_docs(
    "Readiness: consuming from Kafka, and the API answers",
    "Not consuming yet, or Kafka or the API is unreachable.",
)
async def ready(request: web.Request) -> web.Response:
    app = request.app
    kafka, api = await asyncio.gather(app[DEAD_LETTERS].ready(), app[API].reachable())
    checks = {"consumer": app[CONSUMER].consuming, "kafka": kafka, "api": api}
    return probes.readiness(checks, required=checks)


@routes.get("/status", allow_head=False)
@docs(
    tags=["consumer"],
    summary="Assigned partitions, committed offsets, lag and counters",
    responses=probes.UNAUTHORIZED,
)
@response_schema(StatusSchema, 200)
async def status(request: web.Request) -> web.Response:
    return json_response(await request.app[CONSUMER].status())


@routes.post("/consumer/pause")
@docs(
    tags=["consumer"],
    summary="Pause consumption (the batch in flight finishes)",
    responses=probes.UNAUTHORIZED,
)
@response_schema(StatusSchema, 200)
async def pause(request: web.Request) -> web.Response:
    request.app[CONSUMER].pause()
    return json_response(await request.app[CONSUMER].status())


@routes.post("/consumer/resume")
@docs(tags=["consumer"], summary="Resume consumption", responses=probes.UNAUTHORIZED)
@response_schema(StatusSchema, 200)
async def resume(request: web.Request) -> web.Response:
    request.app[CONSUMER].resume()
    return json_response(await request.app[CONSUMER].status())


@routes.post("/consumer/replay")
@docs(
    tags=["consumer"],
    summary="Replay this instance's partitions from an instant or from offsets",
    description="Moves the consumer and commits the new positions at once. Records are "
    "persisted again idempotently: a replayed record never regresses a newer row.",
    responses={**probes.UNAUTHORIZED, 422: probes.error("Invalid request.")},
)
@request_schema(ReplaySchema)
@response_schema(ReplayResultSchema, 200)
async def replay(request: web.Request) -> web.Response:
    try:
        data = REPLAY.load(await read_json(request))
    except ValidationError as error:
        raise ApiError(422, "The replay is invalid.", fields=error.messages) from None
    consumer = request.app[CONSUMER]
    if not consumer.consuming:
        raise ApiError(503, "The consumer has not joined its group yet.")
    try:
        async with asyncio.timeout(REPLAY_WAIT):
            positions = await consumer.replay(Replay(data.get("timestamp"), data.get("offsets")))
    except ReplayRefused as refused:
        raise ApiError(422, "The replay cannot be applied.", fields=refused.fields) from None
    except TimeoutError:
        raise ApiError(503, "The consumer is busy (retrying a batch); nothing moved.") from None
    return json_response({"positions": positions})


@routes.post("/produto/transform")
@docs(
    tags=["produtos"],
    summary="Dry run: the transformed record of an input record",
    description="Validates and transforms without producing or persisting anything. The "
    "availability timestamp is taken from the 'timestamp' query parameter (ISO 8601), "
    "standing for the Kafka record's timestamp; now when absent.",
    parameters=[{"in": "query", "name": "timestamp", "type": "string", "format": "date-time"}],
    responses={**probes.UNAUTHORIZED, 422: probes.error("Invalid record.")},
)
@request_schema(ManualProductSchema)
@response_schema(TransformedProductSchema, 200)
async def dry_run(request: web.Request) -> web.Response:
    try:
        product = load_manual(await read_json(request))
    except ValidationError as error:
        raise invalid(error) from None
    try:
        query = TRANSFORM_QUERY.load({k: v for k, v in request.query.items() if k == "timestamp"})
    except ValidationError as error:
        raise ApiError(422, "Invalid query.", fields=error.messages) from None
    moment: datetime = query.get("timestamp", datetime.now(UTC))
    return json_response(transform(product, int(moment.timestamp() * 1000)))
