"""The scheduler's endpoints: probes, status and the operator's controls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema

from ..common import probes
from ..common.contracts import ManualProductSchema, TransformedProductSchema, load_manual
from ..common.errors import ApiError
from ..common.http import invalid, json_response, read_json
from ..common.transform import transform
from .consumer import Replay
from .keys import API, CONSUMER, DEAD_LETTERS, FLOW

STATUS_PAGE = Path(__file__).with_name("static") / "status.html"

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


class ReplaySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    timestamp = fields.AwareDateTime(
        metadata={
            "description": "Replay records from this instant.",
            "example": "2024-06-12T12:00:00Z",
        }
    )
    offsets = fields.Dict(
        keys=fields.Integer(strict=False),
        values=fields.Integer(strict=True, validate=lambda v: v >= 0),
        metadata={"description": "Partition number to offset.", "example": {"0": 0}},
    )

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("timestamp" in data) == ("offsets" in data):
            raise ValidationError("Give either 'timestamp' or 'offsets'.", "_schema")


class ReplayResultSchema(Schema):
    positions = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"example": {"0": 0, "1": 0}}
    )


class DeadLetterSchema(Schema):
    time = fields.Float(metadata={"description": "Unix time it was dead-lettered."})
    topic = fields.String()
    partition = fields.Integer()
    offset = fields.Integer()
    key = fields.String(allow_none=True)
    stage = fields.String(metadata={"example": "validate"})
    reason = fields.String()
    trace_id = fields.String(allow_none=True)


class FlowSchema(Schema):
    time = fields.Float(metadata={"description": "Unix time of the answer."})
    history = fields.List(
        fields.List(fields.Float()),
        metadata={
            "description": "One sample a second over five minutes: "
            "[unix time, records fetched, persisted, dead-lettered]."
        },
    )
    dead_letters = fields.List(fields.Nested(DeadLetterSchema))
    api = fields.Dict(
        metadata={"description": "The API's outbox backlog and counts, read from its /metrics."}
    )


REPLAY = ReplaySchema()


@routes.get("/", allow_head=False)
async def status_page(request: web.Request) -> web.FileResponse:
    """The live status page (HTML and JS only; it reads the JSON endpoints with a token)."""
    return web.FileResponse(STATUS_PAGE, headers={"Cache-Control": "no-cache"})


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


@routes.get("/status/flow", allow_head=False)
@docs(
    tags=["consumer"],
    summary="The flow over the last five minutes, the last dead letters, the API's outbox",
    description="What the status page at / shows beside /status. The API's numbers are "
    "read from its /metrics by the scheduler, so the page calls one origin only.",
    responses=probes.UNAUTHORIZED,
)
@response_schema(FlowSchema, 200)
async def flow(request: web.Request) -> web.Response:
    return json_response(await request.app[FLOW].snapshot())


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
        raise invalid(error) from None
    consumer = request.app[CONSUMER]
    if not consumer.consuming:
        raise ApiError(503, "The consumer has not joined its group yet.")
    positions = await consumer.replay(Replay(data.get("timestamp"), data.get("offsets")))
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
    moment = datetime.now(UTC)
    if "timestamp" in request.query:
        try:
            moment = datetime.fromisoformat(request.query["timestamp"].replace("Z", "+00:00"))
        except ValueError:
            moment = datetime.min
        if moment.tzinfo is None:
            raise ApiError(
                422,
                "Invalid query.",
                fields={"timestamp": ["Not a valid aware ISO 8601 datetime."]},
            )
    return json_response(transform(product, int(moment.timestamp() * 1000)))
