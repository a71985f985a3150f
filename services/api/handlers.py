"""The API's endpoints: one record enters at ``/produto/manual`` and is persisted at
``/produto/scheduler`` (or its batch form) after the scheduler transformed it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp_apispec import docs, request_schema, response_schema
from aiokafka.errors import KafkaError
from marshmallow import ValidationError

from ..common import jsoncodec, probes
from ..common.contracts import (
    ManualProductSchema,
    TransformedProduct,
    TransformedProductSchema,
    field_errors,
    load_manual,
    load_transformed,
)
from ..common.http import ApiError, Unavailable, invalid, json_response, read_json, trace_id
from ..common.kafka import OFFSET_MAX, PARTITION_MAX, Outgoing
from . import repository, schemas
from .keys import CONFIG, DATABASE, METRICS, PRODUCER, RELAY
from .repository import Outcome, Source

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

ERRORS: dict[int | str, dict[str, Any]] = {
    code: probes.error(text)
    for code, text in {
        400: "Malformed JSON.",
        401: "Missing or wrong bearer token.",
        413: "Body too large.",
        415: "Body is not JSON.",
        422: "Invalid record; every bad field is named.",
        503: "A dependency is down; nothing was written.",
    }.items()
}

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
STATUS = {Outcome.CREATED: 201, Outcome.UPDATED: 200, Outcome.UNCHANGED: 200}
MANUAL_SEND_TIMEOUT = 10.0


@routes.post("/produto/manual")
@docs(
    tags=["produtos"],
    summary="Register a product record on cadastro-produtos",
    description="Validates the record and produces it to the entry topic, keyed by productId, "
    "and answers once the broker acknowledged it. The scheduler takes it from there.",
    responses=ERRORS,
)
@request_schema(ManualProductSchema, example=MANUAL_EXAMPLE)
@response_schema(schemas.ManualAcceptedSchema, 202, description="The record is on the topic.")
async def produce_manual(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        product = load_manual(await read_json(request))
    except ValidationError as error:
        raise invalid(error) from None
    record = dict(product)
    try:
        async with asyncio.timeout(MANUAL_SEND_TIMEOUT):
            [metadata] = await request.app[PRODUCER].send(
                [
                    Outgoing(
                        config.kafka.topic_cadastro,
                        value=jsoncodec.dumps(record),
                        key=product["productId"].encode(),
                        headers=[("trace-id", trace_id(request).encode())],
                    )
                ]
            )
    except (KafkaError, TimeoutError) as exc:
        log.warning(
            "producing product %s failed trace=%s: %s",
            product["productId"],
            trace_id(request),
            exc,
        )
        raise Unavailable("Kafka did not acknowledge the record.") from exc
    log.info(
        "produced product %s to %s[%d]@%d trace=%s",
        product["productId"],
        metadata.topic,
        metadata.partition,
        metadata.offset,
        trace_id(request),
    )
    request.app[METRICS].inc("manual_records_total")
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
    read_back: bool = False,
) -> tuple[list[Outcome], bytes | None]:
    """Upsert the records and enqueue their events in one transaction.

    Returns the outcome of each item and, with ``read_back``, the persisted document of
    the first one.
    """
    app = request.app

    async def write(conn: asyncpg.Connection) -> tuple[list[Outcome], bytes | None]:
        outcomes = await repository.upsert_products(
            conn, items, app[CONFIG].kafka.topic_persistidos
        )
        document = await repository.read_product(conn, items[0][0]["id"]) if read_back else None
        return outcomes, document

    outcomes, document = await app[DATABASE].in_transaction(write, what="persisting products")
    for outcome in outcomes:
        app[METRICS].inc("persisted_records_total", outcome=outcome.value)
    return outcomes, document


@routes.post("/produto/scheduler")
@docs(
    tags=["produtos"],
    summary="Persist a transformed product record",
    description="Upserts the record into products and enqueues it for produtos-persistidos in "
    "the same transaction. 201 when the product is new; 200 when it was updated, or when "
    "the record is a duplicate or older than what is stored (nothing changes).",
    responses=ERRORS,
)
@request_schema(TransformedProductSchema, example=TRANSFORMED_EXAMPLE)
@response_schema(schemas.PersistedSchema, 201, description="Created.")
async def persist_one(request: web.Request) -> web.Response:
    try:
        product = load_transformed(await read_json(request))
    except ValidationError as error:
        raise invalid(error) from None
    try:
        outcomes, document = await persist(request, [(product, None)], read_back=True)
    except REFUSED_BY_DATABASE as exc:
        raise ApiError(422, f"The database refused the record: {exc}") from None
    outcome = outcomes[0]
    log.info("product %s %s trace=%s", product["id"], outcome.value, trace_id(request))
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
    responses=ERRORS,
)
@request_schema(schemas.BatchRequestSchema)
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
    pending: list[dict[str, Any]] = []  # the results of the valid items, in their order
    for index, item in enumerate(items):
        try:
            product, source = load_item(item)
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
        pending.append({"index": index, "id": product["id"]})
        results.append(pending[-1])
    if valid:
        outcomes = await persist_batch_items(request, valid)
        for result, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Outcome):
                result["status"] = outcome.value
            else:
                result["status"] = "rejected"
                result["error"] = {"code": "refused", "message": outcome}
    rejected = len(items) - len(valid)
    log.info(
        "batch of %d records persisted, %d rejected trace=%s",
        len(valid),
        rejected,
        trace_id(request),
    )
    return json_response({"results": results})


async def persist_batch_items(
    request: web.Request, items: list[tuple[TransformedProduct, Source | None]]
) -> list[Outcome | str]:
    """Persist a batch in one transaction; if the database refuses it, one record at a time,
    so that only the records at fault are refused. Returns, for each item, its outcome or
    why the database refused it."""
    try:
        return list((await persist(request, items))[0])
    except REFUSED_BY_DATABASE as exc:
        log.warning(
            "the database refused a batch (%s); persisting it record by record trace=%s",
            exc,
            trace_id(request),
        )
    results: list[Outcome | str] = []
    for item in items:
        try:
            results.append((await persist(request, [item]))[0][0])
        except REFUSED_BY_DATABASE as exc:
            results.append(f"The database refused the record: {exc}")
    return results


def load_item(item: Any) -> tuple[TransformedProduct, Source | None]:
    """Validate a batch item: the product with its contract, the source by hand (three
    plain fields, checked on the hot path without a second schema)."""
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    errors: dict[str, Any] = {}
    product: TransformedProduct | None = None
    try:
        product = load_transformed(item.get("product"))
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
    errors: dict[str, list[str]] = {}
    if not isinstance(topic, str) or not topic:
        errors["topic"] = ["Must be a non-empty string."]
    for name, value, largest in (
        ("partition", partition, PARTITION_MAX),
        ("offset", offset, OFFSET_MAX),
    ):
        if type(value) is not int or not 0 <= value <= largest:
            errors[name] = [f"Must be an integer from 0 to {largest}."]
    if errors:
        raise ValidationError(errors)
    return Source(topic, partition, offset)  # type: ignore[arg-type]


def _id_of(item: Any) -> str | None:
    product = item.get("product") if isinstance(item, dict) else None
    value = product.get("id") if isinstance(product, dict) else None
    return value if isinstance(value, str) else None


@routes.get("/produtos/{id}", allow_head=False)
@docs(
    tags=["produtos"],
    summary="Read a persisted product",
    responses={
        404: probes.error("No such product."),
        401: ERRORS[401],
    },
)
@response_schema(TransformedProductSchema, 200, description="The persisted record.")
async def get_product(request: web.Request) -> web.Response:
    product_id = request.match_info["id"]
    async with request.app[DATABASE].connection() as conn:
        document = await repository.read_product(conn, product_id)
    if document is None:
        raise ApiError(404, f"No product with id {product_id!r}.")
    return web.Response(body=document, content_type="application/json")


@routes.get("/produtos", allow_head=False)
@docs(
    tags=["produtos"],
    summary="List persisted products in id order",
    parameters=[
        {
            "in": "query",
            "name": "after",
            "type": "string",
            "description": "Last id of the previous page.",
        },
        {"in": "query", "name": "limit", "type": "integer", "default": 100, "maximum": 1000},
    ],
    responses={401: ERRORS[401], 422: ERRORS[422]},
)
@response_schema(schemas.ProductPageSchema, 200, description="A page of products.")
async def list_products(request: web.Request) -> web.Response:
    after = request.query.get("after", "")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise ApiError(
            422, "Invalid query.", fields={"limit": ["Must be an integer from 1 to 1000."]}
        )
    async with request.app[DATABASE].connection() as conn:
        page = await repository.read_products_page(conn, after, limit)
    return json_response(
        {
            "items": [jsoncodec.Fragment(document) for _, document in page],
            "next": page[-1][0] if len(page) == limit else None,
        }
    )


routes.get("/health", allow_head=False)(probes.health)


@routes.get("/ready", allow_head=False)
@probes.ready_docs(
    "Readiness: PostgreSQL and Kafka are reachable", "PostgreSQL or Kafka is unreachable."
)
async def ready(request: web.Request) -> web.Response:
    app = request.app
    database, kafka = await asyncio.gather(app[DATABASE].ready(), app[PRODUCER].ready())
    checks = {"database": database, "kafka": kafka, "outbox_relay": app[RELAY].active}
    # Relaying is one replica's job at a time: a standby replica is ready too.
    return probes.readiness(checks, required=("database", "kafka"))
