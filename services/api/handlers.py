"""The API's endpoints: one record enters at ``/produto/manual`` and is persisted at
``/produto/scheduler`` (or its batch form) after the scheduler transformed it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp_apispec import docs, response_schema
from aiokafka.errors import KafkaError
from marshmallow import ValidationError

from ..common import jsoncodec, probes
from ..common.contracts import (
    ID_MAX,
    ManualProductSchema,
    TransformedProduct,
    TransformedProductSchema,
    check_transformed,
    field_errors,
    load_manual,
)
from ..common.docs import BODY_ERRORS, UNAUTHORIZED, UNAVAILABLE, error, json_body, query
from ..common.errors import ApiError, Unavailable
from ..common.http import invalid, json_response, read_json
from ..common.kafka import Outgoing
from ..common.ordering import FUTURE_TIMESTAMP_TOLERANCE, Source, too_far_ahead
from ..common.tracing import TRACING, SpanKind, Trace, parse, trace_of
from . import repository, schemas
from .database import Connection
from .keys import CONFIG, DATABASE, METRICS, PRODUCER, RELAY
from .repository import Outcome

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MANUAL_EXAMPLE = {
    "productId": "12369",
    "productName": "Nome do Produto",
    "productDescription": "Descrição do Produto",
    "price": 100.0,
    "currency": "BRL",
    "stockQuantity": 50,
    "category": "Categoria do Produto",
}
TRANSFORMED_EXAMPLE = {
    "id": "12369",
    "name": "Nome do Produto",
    "description": "Descrição do Produto",
    "pricing": {"amount": 100.0, "currency": "BRL"},
    "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00.000Z"},
    "category": "Categoria do Produto",
}
_TOPIC = re.compile(schemas.TOPIC_PATTERN)
_INCARNATION = re.compile(schemas.INCARNATION_PATTERN)
_INTEGER = re.compile(r"[+-]?[0-9]{1,6}")
LIST_MAX = 1000
STATUS = {Outcome.CREATED: 201, Outcome.UPDATED: 200, Outcome.UNCHANGED: 200}
MANUAL_SEND_TIMEOUT = 10.0


@routes.post("/produto/manual")
@docs(
    tags=["produtos"],
    summary="Register a product record on cadastro-produtos",
    description="Validates the record and produces it to the entry topic, keyed by productId, "
    "and answers once the broker acknowledged it. The scheduler takes it from there.",
    requestBody=json_body(ManualProductSchema, MANUAL_EXAMPLE),
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        503: error("Kafka did not acknowledge the record; it may or may not be on the topic."),
    },
)
@response_schema(schemas.ManualAcceptedSchema, 202, description="The record is on the topic.")
async def produce_manual(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        product = load_manual(await read_json(request))
    except ValidationError as error:
        raise invalid(error) from None
    record = dict(product)
    with request.app[TRACING].span(
        f"produce {config.kafka.topic_cadastro}", parent=trace_of(request), kind=SpanKind.PRODUCER
    ) as trace:
        try:
            async with asyncio.timeout(MANUAL_SEND_TIMEOUT):
                [metadata] = await request.app[PRODUCER].send(
                    [
                        Outgoing(
                            config.kafka.topic_cadastro,
                            value=jsoncodec.dumps(record),
                            key=product["productId"].encode(),
                            headers=[trace.kafka_header],
                        )
                    ]
                )
        except (KafkaError, TimeoutError) as exc:
            log.warning(
                "producing product %s failed: %s",
                product["productId"],
                exc,
                extra={"trace_id": trace.trace_id, "key": product["productId"]},
            )
            raise Unavailable("Kafka did not acknowledge the record.") from exc
    log.info(
        "produced product %s to %s[%d]@%d",
        product["productId"],
        metadata.topic,
        metadata.partition,
        metadata.offset,
        extra={
            "trace_id": trace.trace_id,
            "key": product["productId"],
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
        },
    )
    request.app[METRICS].manual_records.inc()
    return json_response(
        {
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
            "record": record,
        },
        status=202,
    )


# What PostgreSQL may still refuse in a record that passed validation (a data exception or
# a constraint): the record's fault, answered as such, never as a 500 that would have the
# scheduler retry it for ever.
REFUSED_BY_DATABASE = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


async def persist(
    request: web.Request,
    items: list[tuple[TransformedProduct, Source | None]],
    traceparents: Sequence[str],
    read_back: bool = False,
) -> tuple[list[Outcome], bytes | None]:
    """Upsert the records and enqueue their events in one statement (one transaction).

    ``traceparents`` gives each item's trace, kept with its event. Returns the outcome of
    each item and, with ``read_back``, the persisted document of the first one, read in the
    same transaction.
    """
    app = request.app
    metrics = app[METRICS]

    async def write(conn: Connection) -> tuple[list[Outcome], bytes | None]:
        outcomes = await repository.upsert_products(
            conn, items, app[CONFIG].kafka.topic_persistidos, traceparents
        )
        document = await repository.read_product(conn, items[0][0]["id"]) if read_back else None
        return outcomes, document

    started = time.perf_counter()
    with app[TRACING].span(
        "persist",
        parent=trace_of(request),
        links=app[TRACING].links(traceparents),
        attributes={"fluxo.records": len(items)},
    ):
        database = app[DATABASE]
        run = database.in_transaction if read_back else database.run
        outcomes, document = await run(write, what="persisting products")
    metrics.persist_duration.observe(time.perf_counter() - started)
    for outcome, count in Counter(outcomes).items():
        metrics.persisted_records.labels(outcome.value).inc(count)
    return outcomes, document


@routes.post("/produto/scheduler")
@docs(
    tags=["produtos"],
    summary="Persist a transformed product record",
    description="Upserts the record into products and enqueues it for produtos-persistidos in "
    "the same transaction. 201 when the product is new; 200 when it was updated, or when "
    "the record is a duplicate or older than what is stored (nothing changes).",
    requestBody=json_body(TransformedProductSchema, TRANSFORMED_EXAMPLE),
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        **UNAVAILABLE,
        200: {"schema": schemas.PersistedSchema, "description": "Updated, or unchanged."},
        422: error("The record is invalid, or the database refused it; fields are named."),
    },
)
@response_schema(schemas.PersistedSchema, 201, description="Created.")
async def persist_one(request: web.Request) -> web.Response:
    tolerance = request.app[CONFIG].future_timestamp_tolerance
    try:
        product = check_transformed(await read_json(request))
        refuse_ahead(product, datetime.now(UTC), tolerance)
    except ValidationError as error:
        raise invalid(error) from None
    trace = trace_of(request)
    try:
        outcomes, document = await persist(
            request, [(product, None)], [trace.traceparent], read_back=True
        )
    except REFUSED_BY_DATABASE as exc:
        request.app[METRICS].persisted_records.labels("rejected").inc()
        raise ApiError(422, f"The database refused the record: {exc}") from None
    outcome = outcomes[0]
    log.info(
        "product %s %s",
        product["id"],
        outcome.value,
        extra={"trace_id": trace.trace_id, "key": product["id"]},
    )
    return json_response(
        {"status": outcome.value, "product": jsoncodec.Fragment(document or b"null")},
        status=STATUS[outcome],
    )


@routes.post("/produto/scheduler/batch")
@docs(
    tags=["produtos"],
    summary="Persist many transformed records in one transaction",
    description="Each item is validated alone: an invalid item is answered 'rejected' with "
    "its fields, and the others are persisted. Items may carry the Kafka record they came "
    "from (source), which decides which of two records for one product is newer.",
    requestBody=json_body(schemas.BatchRequestSchema),
    responses={
        **BODY_ERRORS,
        **UNAUTHORIZED,
        **UNAVAILABLE,
        422: error('The body is not {"items": [...]} with 1 to 5000 items.'),
    },
)
@response_schema(schemas.BatchResponseSchema, 200, description="One result per item, in order.")
async def persist_batch(request: web.Request) -> web.Response:
    body = await read_json(request)
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= schemas.MAX_BATCH:
        raise ApiError(
            422,
            f'The body must be {{"items": [...]}} with 1 to {schemas.MAX_BATCH} items.',
            fields={"items": [f"Must be a list of 1 to {schemas.MAX_BATCH} items."]},
        )
    results: list[dict[str, Any]] = []
    valid: list[tuple[TransformedProduct, Source | None]] = []
    request_trace = trace_of(request)
    traces: dict[int, Trace] = {}  # the trace of each valid item, by its index
    pending: list[dict[str, Any]] = []  # the results of the valid items, in their order
    now, tolerance = datetime.now(UTC), request.app[CONFIG].future_timestamp_tolerance
    for index, item in enumerate(items):
        try:
            product, source = load_item(item, now=now, tolerance=tolerance)
        except ValidationError as error:
            results.append(
                {
                    "index": index,
                    "id": _id_of(item),
                    "status": "rejected",
                    "error": {
                        "code": "validation_failed",
                        "message": "The record is invalid.",
                        "fields": field_errors(error),
                    },
                }
            )
            continue
        valid.append((product, source))
        traces[index] = parse(item.get("traceparent")) or request_trace
        pending.append({"index": index, "id": product["id"]})
        results.append(pending[-1])
    if valid:
        outcomes = await persist_batch_items(
            request, valid, [traces[result["index"]].traceparent for result in pending]
        )
        for result, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Outcome):
                result["status"] = outcome.value
            else:
                result["status"] = "rejected"
                result["error"] = {"code": "refused", "message": outcome}
    rejected = sum(result["status"] == "rejected" for result in results)
    request.app[METRICS].persisted_records.labels("rejected").inc(rejected)
    if log.isEnabledFor(logging.DEBUG):
        for result in results:
            trace = traces.get(result["index"], request_trace)
            log.debug(
                "product %s %s",
                result["id"],
                result["status"],
                extra={"trace_id": trace.trace_id, "key": result["id"]},
            )
    log.info(
        "batch of %d records: %d persisted, %d rejected",
        len(items),
        len(items) - rejected,
        rejected,
        extra={"trace_id": request_trace.trace_id},
    )
    return json_response({"results": results})


async def persist_batch_items(
    request: web.Request,
    items: list[tuple[TransformedProduct, Source | None]],
    traceparents: Sequence[str],
) -> list[Outcome | str]:
    """Persist a batch in one transaction; if the database refuses it, one record at a time,
    so that only the records at fault are refused. Returns, for each item, its outcome or
    why the database refused it."""
    try:
        return list((await persist(request, items, traceparents))[0])
    except REFUSED_BY_DATABASE as exc:
        log.warning(
            "the database refused a batch (%s); persisting it record by record",
            exc,
            extra={"trace_id": trace_of(request).trace_id},
        )
    results: list[Outcome | str] = []
    for item, trace in zip(items, traceparents, strict=True):
        try:
            results.append((await persist(request, [item], [trace]))[0][0])
        except REFUSED_BY_DATABASE as exc:
            results.append(f"The database refused the record: {exc}")
    return results


def refuse_ahead(product: TransformedProduct, now: datetime, tolerance: float) -> None:
    """Raise ``ValidationError`` naming the availability timestamp when it is more than
    ``tolerance`` seconds after ``now`` (it would beat every later write of the product)."""
    reason = too_far_ahead(product["availability"]["timestamp"], now, tolerance)
    if reason is not None:
        raise ValidationError({"availability": {"timestamp": [f"Too far ahead: {reason}."]}})


def load_item(
    item: Any, *, now: datetime | None = None, tolerance: float = FUTURE_TIMESTAMP_TOLERANCE
) -> tuple[TransformedProduct, Source | None]:
    """Validate a batch item: the product with its contract and no further ahead of ``now``
    (by default the current time) than ``tolerance`` seconds, the source by hand (a few
    plain fields, checked on the hot path without a second schema)."""
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    errors: dict[str, Any] = {}
    product: TransformedProduct | None = None
    try:
        product = check_transformed(item.get("product"))
        refuse_ahead(product, now or datetime.now(UTC), tolerance)
    except ValidationError as error:
        errors["product"] = field_errors(error)
    source = None
    if item.get("source") is not None:
        try:
            source = load_source(item["source"])
        except ValidationError as error:
            errors["source"] = field_errors(error)
    if errors or product is None:
        raise ValidationError(errors)
    return product, source


def load_source(data: Any) -> Source:
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    topic, partition, offset = data.get("topic"), data.get("partition"), data.get("offset")
    incarnation = data.get("incarnation")
    errors: dict[str, list[str]] = {}
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        errors["topic"] = ["Must be a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -."]
    if incarnation is not None and (
        not isinstance(incarnation, str) or not _INCARNATION.fullmatch(incarnation)
    ):
        errors["incarnation"] = ["Must be 1 to 64 of a-z A-Z 0-9 _ -, or null."]
    for name, value, maximum in (
        ("partition", partition, schemas.PARTITION_MAX),
        ("offset", offset, schemas.OFFSET_MAX),
    ):
        if type(value) is not int or not 0 <= value <= maximum:
            errors[name] = [f"Must be an integer from 0 to {maximum}."]
    if errors:
        raise ValidationError(errors)
    return Source(topic, partition, offset, incarnation)  # type: ignore[arg-type]


def _id_of(item: Any) -> str | None:
    product = item.get("product") if isinstance(item, dict) else None
    value = product.get("id") if isinstance(product, dict) else None
    return value if isinstance(value, str) else None


@routes.get("/produtos/{id}", allow_head=False)
@docs(
    tags=["produtos"],
    summary="Read a persisted product",
    parameters=[
        {
            "in": "path",
            "name": "id",
            "required": True,
            "description": "The product id. One that no product can have answers 404 too.",
            "schema": {"type": "string"},
        }
    ],
    responses={404: error("No such product."), **UNAUTHORIZED, **UNAVAILABLE},
)
@response_schema(TransformedProductSchema, 200, description="The persisted record.")
async def get_product(request: web.Request) -> web.Response:
    product_id = request.match_info["id"]
    document = None
    # PostgreSQL refuses NUL in text: such an id, like an over-long one, is nobody's.
    if "\x00" not in product_id and len(product_id) <= ID_MAX:
        document = await request.app[DATABASE].run(
            lambda conn: repository.read_product(conn, product_id), what="reading a product"
        )
    if document is None:
        raise ApiError(404, f"No product with id {product_id!r}.")
    return web.Response(body=document, content_type="application/json")


@routes.get("/produtos", allow_head=False)
@docs(
    tags=["produtos"],
    summary="List persisted products in id order",
    parameters=[
        query(
            "after",
            {"type": "string", "maxLength": ID_MAX, "pattern": "^[^\\u0000]*$"},
            "The last id of the previous page (its 'next'); the first page without it.",
        ),
        query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": 100},
            "Most products on the page.",
        ),
    ],
    responses={
        **UNAUTHORIZED,
        **UNAVAILABLE,
        422: error("'after' or 'limit' is invalid; named under 'fields'."),
    },
)
@response_schema(schemas.ProductPageSchema, 200, description="A page of products.")
async def list_products(request: web.Request) -> web.Response:
    after = request.query.get("after", "")
    problems: dict[str, list[str]] = {}
    if len(after) > ID_MAX or "\x00" in after:
        problems["after"] = [f"Must be at most {ID_MAX} characters, without NUL."]
    raw_limit = request.query.get("limit", "100")
    limit = int(raw_limit) if _INTEGER.fullmatch(raw_limit) else 0
    if not 1 <= limit <= LIST_MAX:
        problems["limit"] = [f"Must be an integer from 1 to {LIST_MAX}."]
    if problems:
        raise ApiError(422, "Invalid query.", fields=problems)
    page = await request.app[DATABASE].run(
        lambda conn: repository.read_products_page(conn, after, limit), what="listing products"
    )
    return json_response(
        {
            "items": [jsoncodec.Fragment(document) for _, document in page],
            "next": page[-1][0] if len(page) == limit else None,
        }
    )


routes.get("/health", allow_head=False)(probes.health)


@routes.get("/ready", allow_head=False)
@probes.ready_docs(
    "Readiness: PostgreSQL and Kafka are reachable",
    "PostgreSQL or Kafka is unreachable.",
    schemas.ApiProbeSchema,
)
async def ready(request: web.Request) -> web.Response:
    app = request.app
    database, kafka = await asyncio.gather(app[DATABASE].ready(), app[PRODUCER].ready())
    checks = {"database": database, "kafka": kafka, "outbox_relay": app[RELAY].active}
    # A replica holding no relay slot (more replicas than slots, say) is ready too.
    return probes.readiness(
        checks,
        required=("database", "kafka"),
        database_primary=app[DATABASE].primary if database else None,
    )
