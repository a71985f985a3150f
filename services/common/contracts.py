"""The record contracts: what enters on ``cadastro-produtos`` and what the API persists.

The schemas know nothing of HTTP or Kafka; both services validate with them.
"""

from __future__ import annotations

import decimal
from datetime import datetime
from typing import Any, TypedDict

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

ID_MAX = 64
NAME_MAX = 255
DESCRIPTION_MAX = 4096
# NUMERIC(14, 2): twelve integer digits and cents, so prices stay below 10**12. Fourteen
# significant digits also survive a round trip through a JSON number (a double holds 15).
PRICE_LIMIT = 10**12
QUANTITY_MAX = 2**31 - 1


class ManualProduct(TypedDict):
    """A validated input record (``cadastro-produtos``, ``POST /produto/manual``)."""

    productId: str
    productName: str
    productDescription: str
    price: decimal.Decimal
    currency: str
    stockQuantity: int
    category: str


class Pricing(TypedDict):
    amount: decimal.Decimal
    currency: str


class Availability(TypedDict):
    quantity: int
    timestamp: datetime


class TransformedProduct(TypedDict):
    """A validated transformed record (``POST /produto/scheduler``)."""

    id: str
    name: str
    description: str
    pricing: Pricing
    availability: Availability
    category: str


class Text(fields.String):
    """Required, non-empty, bounded text that PostgreSQL can store (no U+0000).

    Checked in one step rather than through a list of validators: validation is most of
    the CPU each record costs, and these fields are most of the record.
    """

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        metadata = {"minLength": 1, "maxLength": max_length, **kwargs.pop("metadata", {})}
        super().__init__(required=True, metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= self.max_length:
            raise ValidationError(f"Length must be between 1 and {self.max_length}.")
        if "\x00" in text:
            raise ValidationError("Must not contain the NUL character.")
        return text


class UtcDateTime(fields.DateTime):
    """An ISO 8601 instant with a UTC offset or ``Z``, parsed by ``datetime.fromisoformat``."""

    default_error_messages = {"invalid": "Not a valid aware datetime."}  # noqa: RUF012 (marshmallow API)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        if moment.tzinfo is None:
            raise self.make_error("invalid")
        return moment


def _text(max_length: int, **kwargs: Any) -> Text:
    return Text(max_length, **kwargs)


def _cents(value: decimal.Decimal) -> None:
    exponent = value.normalize().as_tuple().exponent  # 100.500 has cents only
    if isinstance(exponent, int) and exponent < -2:
        raise ValidationError("Must have at most 2 decimal places.")


def _money(**kwargs: Any) -> fields.Decimal:
    return fields.Decimal(
        required=True,
        allow_nan=False,
        validate=[validate.Range(min=0, max=PRICE_LIMIT, max_inclusive=False), _cents],
        **kwargs,
    )


def _currency(**kwargs: Any) -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Z]{3}\Z", error="Must be three upper-case letters (ISO 4217)."
        ),
        **kwargs,
    )


def _quantity(**kwargs: Any) -> fields.Integer:
    return fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=QUANTITY_MAX), **kwargs
    )


class ManualProductSchema(Schema):
    """Input record. Unknown fields are dropped, so producers can add fields first."""

    class Meta:
        unknown = EXCLUDE

    productId = _text(ID_MAX, metadata={"example": "12369"})
    productName = _text(NAME_MAX, metadata={"example": "Nome do Produto"})
    productDescription = _text(DESCRIPTION_MAX, metadata={"example": "Descrição do Produto"})
    price = _money(metadata={"example": 100.0})
    currency = _currency(metadata={"example": "BRL"})
    stockQuantity = _quantity(metadata={"example": 50})
    category = _text(NAME_MAX, metadata={"example": "Categoria do Produto"})


class PricingSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    amount = _money(metadata={"example": 100.0})
    currency = _currency(metadata={"example": "BRL"})


class AvailabilitySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    quantity = _quantity(metadata={"example": 50})
    timestamp = UtcDateTime(required=True, metadata={"example": "2024-06-12T12:00:00.000Z"})


class TransformedProductSchema(Schema):
    """Transformed record, as posted by the scheduler and published once persisted."""

    class Meta:
        unknown = EXCLUDE

    id = _text(ID_MAX, metadata={"example": "12369"})
    name = _text(NAME_MAX, metadata={"example": "Nome do Produto"})
    description = _text(DESCRIPTION_MAX, metadata={"example": "Descrição do Produto"})
    pricing = fields.Nested(PricingSchema, required=True)
    availability = fields.Nested(AvailabilitySchema, required=True)
    category = _text(NAME_MAX, metadata={"example": "Categoria do Produto"})


MANUAL_PRODUCT = ManualProductSchema()
TRANSFORMED_PRODUCT = TransformedProductSchema()


def load_manual(data: Any) -> ManualProduct:
    """Validate an input record; raises ``ValidationError`` naming every bad field."""
    product: ManualProduct = MANUAL_PRODUCT.load(_object(data))
    return product


def load_transformed(data: Any) -> TransformedProduct:
    """Validate a transformed record; raises ``ValidationError`` naming every bad field."""
    product: TransformedProduct = TRANSFORMED_PRODUCT.load(_object(data))
    return product


def field_errors(error: ValidationError) -> Any:
    """The messages of a validation error, keyed by field (nested for nested records)."""
    return error.messages


def _object(data: Any) -> Any:
    # marshmallow answers a list with a message under "_schema"; say what was expected.
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    return data
