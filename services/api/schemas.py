"""Request and response schemas of the API's endpoints, beyond the record contracts.

They document the endpoints in Swagger; the handlers validate the batch envelope itself,
item by item, with the limits written here.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from ..common.contracts import ManualProductSchema, TransformedProductSchema
from ..common.probes import ErrorBodySchema, ProbeSchema

MAX_BATCH = 5000
# Kafka's legal topic names; partition and offset as PostgreSQL stores them (integer, bigint).
TOPIC_PATTERN = "[a-zA-Z0-9._-]{1,249}"
PARTITION_MAX = 2**31 - 1
OFFSET_MAX = 2**63 - 1
# Kafka's topic ids as its tools print them (22 characters of URL-safe base64), and room
# for other markers of a topic's incarnation.
INCARNATION_PATTERN = "[a-zA-Z0-9_-]{1,64}"


class ManualAcceptedSchema(Schema):
    topic = fields.String(metadata={"example": "cadastro-produtos"})
    partition = fields.Integer(metadata={"example": 3})
    offset = fields.Integer(metadata={"example": 42})
    record = fields.Nested(ManualProductSchema)


class PersistedSchema(Schema):
    status = fields.String(
        validate=validate.OneOf(["created", "updated", "unchanged"]),
        metadata={"example": "created"},
    )
    product = fields.Nested(TransformedProductSchema)


class SourceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    topic = fields.String(
        required=True,
        metadata={"example": "cadastro-produtos", "pattern": f"^{TOPIC_PATTERN}$"},
    )
    partition = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=PARTITION_MAX)
    )
    offset = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=OFFSET_MAX)
    )
    incarnation = fields.String(
        allow_none=True,
        metadata={
            "description": "The source topic's id. A topic deleted and created again under "
            "the same name has a new one: its offsets are then not compared with the old "
            "topic's. Within one partition of one incarnation the higher offset wins; "
            "otherwise the later availability.timestamp.",
            "example": "hBDh2oC1RjqXs2pCBdV5Tw",
            "pattern": f"^{INCARNATION_PATTERN}$",
        },
    )


class BatchItemSchema(Schema):
    product = fields.Nested(TransformedProductSchema, required=True)
    source = fields.Nested(
        SourceSchema, allow_none=True, metadata={"description": "The Kafka record it came from."}
    )
    traceparent = fields.String(
        metadata={
            "description": "W3C trace context of the record, kept with its event on "
            "produtos-persistidos; the request's own when absent or invalid.",
            "example": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
    )


class BatchRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # as the handler does: other keys are ignored

    items = fields.List(
        # Any value: each item is validated alone, and answered 'rejected' when invalid.
        fields.Raw(
            metadata={
                "description": "A BatchItem: {'product': TransformedProduct, 'source': Source "
                "or null (optional)}. An item that is not one is answered 'rejected' with its "
                "fields in the results; the others persist."
            }
        ),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )


class BatchResultSchema(Schema):
    index = fields.Integer(metadata={"example": 0})
    id = fields.String(
        allow_none=True,
        metadata={"example": "12369", "description": "null when the item has no text id."},
    )
    status = fields.String(
        validate=validate.OneOf(["created", "updated", "unchanged", "rejected"]),
        metadata={"example": "created"},
    )
    error = fields.Nested(ErrorBodySchema)


class BatchResponseSchema(Schema):
    results = fields.List(fields.Nested(BatchResultSchema))


class ProductPageSchema(Schema):
    items = fields.List(fields.Nested(TransformedProductSchema))
    next = fields.String(
        allow_none=True, metadata={"description": "Pass as 'after' for the next page."}
    )


class ApiProbeSchema(ProbeSchema):
    database_primary = fields.String(
        allow_none=True,
        metadata={
            "example": "localhost:5433",
            "description": "The PostgreSQL server this replica writes to, as DATABASE_URL "
            "names it; null while none reached takes writes (a failover in progress).",
        },
    )
