"""Request and response schemas of the API's endpoints, beyond the record contracts.

They document the endpoints in Swagger; the handlers validate the batch envelope itself,
item by item.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from ..common.contracts import ManualProductSchema, TransformedProductSchema
from ..common.probes import ErrorBodySchema

MAX_BATCH = 5000


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

    topic = fields.String(required=True, metadata={"example": "cadastro-produtos"})
    partition = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    offset = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class BatchItemSchema(Schema):
    product = fields.Nested(TransformedProductSchema, required=True)
    source = fields.Nested(SourceSchema, metadata={"description": "The Kafka record it came from."})
    traceparent = fields.String(
        metadata={
            "description": "W3C trace context of the record, kept with its event on "
            "produtos-persistidos; the request's own when absent or invalid.",
            "example": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
    )


class BatchRequestSchema(Schema):
    items = fields.List(
        fields.Nested(BatchItemSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )


class BatchResultSchema(Schema):
    index = fields.Integer(metadata={"example": 0})
    id = fields.String(metadata={"example": "12369"})
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
