"""The operator's dead-letter endpoints: find a dead letter, fix it, re-drive it once."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_apispec import docs, response_schema
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..common.contracts import (
    TIMESTAMP_PATTERN,
    TIMESTAMP_RANGE,
    ManualProductSchema,
    UtcDateTime,
    documented,
    parse_timestamp,
)
from ..common.docs import BODY_ERRORS, UNAUTHORIZED, UNAVAILABLE, error, json_body, query
from ..common.errors import ApiError
from ..common.http import invalid, json_response, read_json
from ..common.kafka import OFFSET_MAX, PARTITION_MAX
from ..common.metrics import DEAD_LETTER_STAGES
from .dead_letter_index import CURSOR_PATTERN, DeadLetterIndex, Filter, parse_cursor
from .keys import DEAD_LETTER_INDEX, REDRIVE_JOBS, REDRIVER
from .records import bounded_int
from .redrive_jobs import RATE_DEFAULT, RATE_MAX, SYNCHRONOUS_MAX
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
    value = bounded_int(request.match_info[name], maximum)
    if value is None:
        raise ApiError(
            422, "The request is invalid.", fields={name: [f"Must be between 0 and {maximum}."]}
        )
    return value


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
        "content": {"application/json": {"schema": RedriveBodySchema}},
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


LIST_MAX = 500
TIME = {"type": "string", "format": "date-time", "pattern": documented(TIMESTAMP_PATTERN)}


class HeaderSchema(Schema):
    name = fields.String()
    value = fields.String(allow_none=True)
    encoding = fields.String(metadata={"enum": ["utf-8", "base64"]})


class SourceSchema(Schema):
    topic = fields.String()
    partition = fields.Integer()
    offset = fields.Integer()
    timestamp = fields.String(allow_none=True, metadata={"format": "date-time"})


class PositionSchema(Schema):
    partition = fields.Integer(metadata={"description": "On the dead-letter topic."})
    offset = fields.Integer()
    dead_lettered_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    attempt = fields.Integer(metadata={"description": "The re-drive attempt that came back."})
    stage = fields.String()
    reason = fields.String()


class RedriveOutcomeSchema(Schema):
    type = fields.String()
    entry = fields.String()
    attempt = fields.Integer()
    at = fields.String(metadata={"format": "date-time"})
    corrected = fields.Boolean()
    token = fields.String(metadata={"description": "A short SHA-256 digest of the token."})
    position = fields.String()
    topic = fields.String()
    partition = fields.Integer()
    offset = fields.Integer()


class DeadLetterEntrySchema(Schema):
    entry = fields.String(metadata={"example": "cadastro-produtos/0/12"})
    source = fields.Nested(SourceSchema)
    key = fields.String(allow_none=True)
    value = fields.String(allow_none=True)
    value_encoding = fields.String(metadata={"enum": ["utf-8", "base64"]})
    headers = fields.List(fields.Nested(HeaderSchema))
    dlq_headers = fields.List(fields.Nested(HeaderSchema))
    stage = fields.String(metadata={"enum": list(DEAD_LETTER_STAGES)})
    reason = fields.String()
    trace_id = fields.String(allow_none=True)
    dead_lettered_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    attempt = fields.Integer()
    positions = fields.List(fields.Nested(PositionSchema))
    redrives = fields.List(fields.Nested(RedriveOutcomeSchema))


class DeadLetterPageSchema(Schema):
    items = fields.List(fields.Nested(DeadLetterEntrySchema))
    next = fields.String(
        allow_none=True, metadata={"description": "Pass as 'cursor' for the next page."}
    )


FILTERS = [
    query(
        "stage",
        {"type": "string", "enum": list(DEAD_LETTER_STAGES)},
        "Where the record failed, the last time.",
    ),
    query("reason", {"type": "string"}, "A substring of a reason it was dead-lettered for."),
    query("key", {"type": "string"}, "The record's key."),
    query("since", TIME, f"Dead-lettered (the last time) at or after. {TIMESTAMP_RANGE}"),
    query("until", TIME, f"Dead-lettered (the last time) before. {TIMESTAMP_RANGE}"),
    query(
        "redriven",
        {"type": "string", "enum": ["true", "false"]},
        "Re-driven at least once, or never.",
    ),
]


def dead_letter_filter(values: Any) -> tuple[Filter, dict[str, list[str]]]:
    """The filter the query (or a body's 'filter') names, and what is wrong with it."""
    problems: dict[str, list[str]] = {}
    stage = values.get("stage")
    if stage is not None and stage not in DEAD_LETTER_STAGES:
        problems["stage"] = [f"Must be one of {', '.join(DEAD_LETTER_STAGES)}."]
    moments = {}
    for name in ("since", "until"):
        if name in values:
            try:
                moments[name] = parse_timestamp(values[name])
            except ValueError as exc:
                problems[name] = [str(exc)]
    redriven = values.get("redriven")
    if redriven is not None and redriven not in ("true", "false"):
        problems["redriven"] = ["Must be true or false."]
    return (
        Filter(
            stage=stage,
            reason=values.get("reason"),
            key=values.get("key"),
            since=moments.get("since"),
            until=moments.get("until"),
            redriven=None if redriven is None else redriven == "true",
        ),
        problems,
    )


@routes.get("/dead-letters", allow_head=False)
@docs(
    tags=["dead letters"],
    summary="The dead letters, one entry per source record, newest first",
    description="Answered from an index the scheduler keeps in memory, built by following "
    "the dead-letter topic (no consumer group). Each entry holds its source record's "
    "coordinates, key, value (text, or base64 when not UTF-8), headers, trace id, every "
    "position it occupies on the dead-letter topic and its re-drives.",
    parameters=[
        *FILTERS,
        query(
            "cursor",
            {"type": "string", "pattern": CURSOR_PATTERN},
            "The previous page's 'next'; the first page without it.",
        ),
        query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": 100},
            "Most entries on the page.",
        ),
    ],
    responses={
        **UNAUTHORIZED,
        422: error("A filter, the cursor or the limit is invalid; named under 'fields'."),
        503: error("The dead-letter topic has not been read to its end yet."),
    },
)
@response_schema(DeadLetterPageSchema, 200, description="A page of dead letters.")
async def list_dead_letters(request: web.Request) -> web.Response:
    criteria, problems = dead_letter_filter(request.query)
    cursor = None
    if "cursor" in request.query:
        try:
            cursor = parse_cursor(request.query["cursor"])
        except ValueError as exc:
            problems["cursor"] = [str(exc)]
    raw_limit = request.query.get("limit", "100")
    limit = bounded_int(raw_limit, LIST_MAX) or 0
    if not 1 <= limit <= LIST_MAX:
        problems["limit"] = [f"Must be an integer from 1 to {LIST_MAX}."]
    if problems:
        raise ApiError(422, "Invalid query.", fields=problems)
    index = caught_up_index(request)
    entries, following = index.page(criteria, cursor, limit)
    return json_response({"items": [index.describe(entry) for entry in entries], "next": following})


class StrictBoolean(fields.Boolean):
    """true or false only: not 0, 1 or "yes" (marshmallow's Boolean takes those)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class PositionBodySchema(Schema):
    partition = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=PARTITION_MAX)
    )
    offset = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=OFFSET_MAX)
    )


class FilterBodySchema(Schema):
    stage = fields.String(validate=validate.OneOf(DEAD_LETTER_STAGES))
    reason = fields.String(metadata={"description": "A substring of a reason."})
    key = fields.String()
    since = UtcDateTime(metadata={"description": "Dead-lettered (the last time) at or after."})
    until = UtcDateTime(metadata={"description": "Dead-lettered (the last time) before."})
    redriven = StrictBoolean()


class BulkRedriveSchema(Schema):
    positions = fields.List(
        fields.Nested(PositionBodySchema),
        validate=validate.Length(min=1, max=100_000),
        metadata={"description": "Dead-letter positions; each entry is re-driven once."},
    )
    filter = fields.Nested(
        FilterBodySchema, metadata={"description": "The entries GET /dead-letters would list."}
    )
    dry_run = StrictBoolean(
        load_default=False,
        metadata={"description": "Only the verdicts; nothing is produced."},
    )
    rate = fields.Integer(
        strict=True,
        load_default=RATE_DEFAULT,
        validate=validate.Range(min=1, max=RATE_MAX),
        metadata={"description": "Re-drives a second at most."},
    )

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("positions" in data) == ("filter" in data):
            raise ValidationError("Give either 'positions' or 'filter'.", "_schema")


def bulk_spec(spec: dict[str, Any]) -> None:
    """Document what the bulk body's schema cannot say by itself: exactly one of its two
    ways of naming entries."""
    bulk = spec["components"]["schemas"]["BulkRedrive"]
    bulk["oneOf"] = [{"required": ["positions"]}, {"required": ["filter"]}]
    for name in ("BulkRedrive", "PositionBody", "FilterBody"):
        spec["components"]["schemas"][name]["additionalProperties"] = False


class JobSchema(Schema):
    id = fields.String()
    state = fields.String(metadata={"enum": ["running", "done", "cancelled", "failed"]})
    total = fields.Integer()
    done = fields.Integer()
    outcomes = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"example": {"produced": 2, "already": 1}},
    )
    results = fields.List(
        fields.Dict(),
        metadata={"description": "Per entry: its position, outcome and answer."},
    )


class BulkRedriveResultSchema(JobSchema):
    dry_run = fields.Boolean()
    verdicts = fields.List(
        fields.Dict(),
        metadata={"description": "With dry_run: per entry, the scheduler's and the API's verdict."},
    )
    missing = fields.List(
        fields.Nested(PositionBodySchema),
        metadata={"description": "Positions without a dead letter (as far as indexed)."},
    )


BULK = BulkRedriveSchema()


@routes.post("/dead-letters/redrive")
@docs(
    tags=["dead letters"],
    summary="Re-drive many dead letters as they are, at a rate",
    description=f"Entries named by 'positions' or by a 'filter' (not both). Up to "
    f"{SYNCHRONOUS_MAX:,} entries, the answer comes when they are done; beyond, 202 with a "
    "job to follow at /dead-letters/jobs/{id}. With dry_run, only the verdicts: the "
    "scheduler's validation and the API's schema (a refusal by the database is only known "
    "by re-driving). Each attempt of an entry is re-driven once: sent again, the request "
    "re-drives only what was not.",
    requestBody=json_body(
        BulkRedriveSchema, {"positions": [{"partition": 0, "offset": 12}], "dry_run": True}
    ),
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        202: {"schema": JobSchema, "description": "Over 1,000 entries: the job started."},
        503: error("The dead-letter topic has not been read to its end yet."),
    },
)
@response_schema(BulkRedriveResultSchema, 200)
async def redrive_many(request: web.Request) -> web.Response:
    try:
        data = BULK.load(await read_json(request))
    except ValidationError as exc:
        raise invalid(exc) from None
    index = caught_up_index(request)
    jobs = request.app[REDRIVE_JOBS]
    missing: list[Any] = []
    if "positions" in data:
        positions = [(p["partition"], p["offset"]) for p in data["positions"]]
        entries, missing = jobs.entries_at(positions)
    else:
        entries = index.matching(Filter(**data["filter"]))
    if data["dry_run"]:
        return json_response(
            {
                "dry_run": True,
                "total": len(entries),
                "verdicts": await jobs.dry_run(entries),
                "missing": missing,
            }
        )
    if len(entries) > SYNCHRONOUS_MAX:
        job = jobs.start(entries, data["rate"], bearer(request))
        return json_response(job.describe(with_results=False), status=202)
    job = await jobs.run_now(entries, data["rate"], bearer(request))
    return json_response({"dry_run": False, **job.describe(), "missing": missing})


JOB_ID = [
    {
        "in": "path",
        "name": "id",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "description": "The job's id, as the 202 answered it.",
    }
]


def caught_up_index(request: web.Request) -> DeadLetterIndex:
    """The dead-letter index, once it has read the topic to its end (503 before)."""
    index = request.app[DEAD_LETTER_INDEX]
    if not index.caught_up:
        raise ApiError(503, "The dead-letter topic has not been read to its end yet.")
    return index


def job_of(request: web.Request) -> Any:
    job = request.app[REDRIVE_JOBS].jobs.get(request.match_info["id"])
    if job is None:
        raise ApiError(404, "No such job (jobs live in the process that started them).")
    return job


@routes.get("/dead-letters/jobs/{id}", allow_head=False)
@docs(
    tags=["dead letters"],
    summary="A re-drive job's progress",
    parameters=JOB_ID,
    responses={**UNAUTHORIZED, 404: error("No such job in this scheduler.")},
)
@response_schema(JobSchema, 200)
async def get_job(request: web.Request) -> web.Response:
    return json_response(job_of(request).describe())


@routes.delete("/dead-letters/jobs/{id}")
@docs(
    tags=["dead letters"],
    summary="Cancel a re-drive job (what it re-drove stays re-driven)",
    parameters=JOB_ID,
    responses={**UNAUTHORIZED, 404: error("No such job in this scheduler.")},
)
@response_schema(JobSchema, 200)
async def cancel_job(request: web.Request) -> web.Response:
    job = job_of(request)
    await request.app[REDRIVE_JOBS].cancel(job)
    return json_response(job.describe())
