"""The scheduler's endpoints: probes, status and the operator's controls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, response_schema
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..common import probes
from ..common.contracts import (
    FUTURE_BOUND,
    TIMESTAMP_PATTERN,
    TIMESTAMP_RANGE,
    ManualProductSchema,
    TransformedProductSchema,
    UtcDateTime,
    documented,
    field_errors,
    load_manual,
    parse_timestamp,
)
from ..common.docs import BODY_ERRORS, UNAUTHORIZED, error, json_body, query
from ..common.errors import ApiError
from ..common.http import invalid, json_response, read_json
from ..common.ordering import too_far_ahead
from ..common.transform import transform
from .consumer import Replay, ReplayRefused
from .keys import API, CONFIG, CONSUMER, DEAD_LETTERS, FLOW

STATUS_PAGE = Path(__file__).with_name("static") / "status.html"

routes = web.RouteTableDef()

# Kafka offsets are signed 64-bit integers.
OFFSET_MAX = 2**63 - 1


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


# How long a replay waits for the consumer loop (busy retrying a batch, say).
REPLAY_WAIT = 30.0


class ReplaySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    timestamp = UtcDateTime(
        metadata={
            "description": "Replay records from this instant.",
            "example": "2024-06-12T12:00:00Z",
        },
    )
    # The documented keys are the topic's partition numbers (see replay_spec).
    offsets = fields.Dict(
        keys=fields.String(),
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


def replay_spec(spec: dict[str, Any], partitions: int) -> None:
    """Document what the replay body's schema cannot say by itself: exactly one of its two
    fields, and the topic's partition numbers as the keys of 'offsets' (at least one)."""
    replay = spec["components"]["schemas"]["Replay"]
    replay["oneOf"] = [{"required": ["timestamp"]}, {"required": ["offsets"]}]
    offsets = replay["properties"]["offsets"]
    value = offsets.pop("additionalProperties")
    offsets["properties"] = {str(partition): value for partition in range(partitions)}
    offsets["additionalProperties"] = False
    offsets["minProperties"] = 1


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
        metadata={
            "description": "The API's outbox backlog and counts, read from its /metrics, and "
            "database_primary, the PostgreSQL node it writes to, from its /ready."
        }
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
    responses=UNAUTHORIZED,
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
    responses=UNAUTHORIZED,
)
@response_schema(FlowSchema, 200)
async def flow(request: web.Request) -> web.Response:
    return json_response(await request.app[FLOW].snapshot())


@routes.post("/consumer/pause")
@docs(
    tags=["consumer"],
    summary="Pause consumption (the batch in flight finishes)",
    responses=UNAUTHORIZED,
)
@response_schema(StatusSchema, 200)
async def pause(request: web.Request) -> web.Response:
    request.app[CONSUMER].pause()
    return json_response(await request.app[CONSUMER].status())


@routes.post("/consumer/resume")
@docs(tags=["consumer"], summary="Resume consumption", responses=UNAUTHORIZED)
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
    requestBody=json_body(ReplaySchema, {"offsets": {"0": 0}}),
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        503: error("The consumer has not joined its group yet; nothing was moved."),
    },
)
@response_schema(ReplayResultSchema, 200)
async def replay(request: web.Request) -> web.Response:
    try:
        data = REPLAY.load(await read_json(request))
    except ValidationError as exc:
        raise invalid(exc) from None
    offsets: dict[str, int] | None = data.get("offsets")
    if offsets is not None:
        partitions = {str(p) for p in range(request.app[CONFIG].kafka.partitions)}
        unknown = sorted(key for key in offsets if key not in partitions)
        if unknown:
            raise ApiError(
                422,
                "The request is invalid.",
                fields={"offsets": {key: ["Not a partition of the topic."] for key in unknown}},
            )
        data["offsets"] = {int(key): offset for key, offset in offsets.items()}
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
    "availability timestamp is taken from the 'timestamp' query parameter, standing for the "
    "Kafka record's timestamp; now when absent.",
    parameters=[
        query(
            "timestamp",
            {"type": "string", "format": "date-time", "pattern": documented(TIMESTAMP_PATTERN)},
            f"The source record's timestamp. {TIMESTAMP_RANGE} {FUTURE_BOUND}",
        )
    ],
    requestBody=json_body(ManualProductSchema),
    responses={**BODY_ERRORS, **UNAUTHORIZED},
)
@response_schema(TransformedProductSchema, 200)
async def dry_run(request: web.Request) -> web.Response:
    problems: dict[str, Any] = {}
    moment = datetime.now(UTC)
    if "timestamp" in request.query:
        tolerance = request.app[CONFIG].future_timestamp_tolerance
        try:
            moment = parse_timestamp(request.query["timestamp"])
            if reason := too_far_ahead(moment, datetime.now(UTC), tolerance):
                raise ValueError(f"Too far ahead: {reason}.")
        except ValueError as exc:
            problems["timestamp"] = [str(exc)]
    try:
        product = load_manual(await read_json(request))
    except ValidationError as exc:
        problems.update(field_errors(exc))
    if problems:
        raise ApiError(422, "The request is invalid.", fields=problems)
    return json_response(transform(product, int(moment.timestamp() * 1000)))
