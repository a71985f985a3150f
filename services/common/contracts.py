"""The record contracts: what enters on ``cadastro-produtos`` and what the API persists.

The schemas know nothing of HTTP or Kafka; both services validate with them.
"""

from __future__ import annotations

import decimal
import functools
import re
from datetime import UTC, datetime
from typing import Any, TypedDict, cast

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

ID_MAX = 64
NAME_MAX = 255
DESCRIPTION_MAX = 4096
# NUMERIC(14, 2): twelve integer digits and cents, so prices stay below 10**12. Fourteen
# significant digits also survive a round trip through a JSON number (a double holds 15).
PRICE_LIMIT = 10**12
PRICE_MAX = decimal.Decimal("999999999999.99")
QUANTITY_MAX = 2**31 - 1

# Each pattern below is written once and serves both as the check and, anchored with ^ and $,
# as the documented JSON Schema pattern (ECMA 262), so what is documented is what is enforced.
# Python's re reads the same text; checks use fullmatch, so "BRL\n" is no currency.

# ECMA 262's white space and line terminators (its \s), spelled out so both engines agree.
WHITESPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Text: at least one character that is not white space, and no NUL (PostgreSQL refuses it).
TEXT_PATTERN = rf"[^\u0000]*[^\u0000{WHITESPACE}][^\u0000]*"
CURRENCY_PATTERN = "[A-Z]{3}"
# RFC 3339 with a Z or an offset, to the millisecond at most: what is stored reads back as is.
# Only real days of the years 1970 to 2099 and each field within its range, so that what the
# pattern accepts is what the check accepts, but for what a pattern cannot say: the first
# hours of 1970 written with an offset ahead of UTC, and the end of the range, which moves
# with the clock (FUTURE_TIMESTAMP_TOLERANCE_SECONDS, below).
_YEAR = "(19[7-9][0-9]|20[0-9]{2})"
_LEAP_YEAR = "(197[26]|198[048]|199[26]|20[02468][048]|20[13579][26])"  # 2000 is one
_MONTH_DAY = (
    "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"  # every month
    "|(0[13-9]|1[0-2])-(29|30)"  # but February
    "|(0[13578]|1[02])-31)"  # the long months
)
_DATE = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
TIMESTAMP_PATTERN = rf"{_DATE}T{_TIME}(\.[0-9]{{1,3}})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# The upper bound (FUTURE_TIMESTAMP_TOLERANCE_SECONDS after the server's clock) is a setting,
# checked where a record is persisted (services/common/ordering.py, too_far_ahead).
TIMESTAMP_RANGE = (
    "From 1970-01-01T00:00:00Z on, with a Z or an offset and at most millisecond precision."
)
FUTURE_BOUND = (
    "A record stamped more than FUTURE_TIMESTAMP_TOLERANCE_SECONDS (60 by default) after the "
    "server's clock is refused."
)

_BLANK = re.compile(f"[{WHITESPACE}]*")
_CURRENCY = re.compile(CURRENCY_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def documented(pattern: str) -> str:
    """The pattern as the specs write it: anchored at both ends."""
    return f"^{pattern}$"


def parse_timestamp(value: Any) -> datetime:
    """An instant in the documented form and range (``TIMESTAMP_RANGE``).

    Raises ``ValueError`` saying what is wrong. One parser for every timestamp a client sends.
    """
    if not isinstance(value, str):
        raise ValueError(_NOT_A_TIMESTAMP)
    return _timestamp_of(value)


_NOT_A_TIMESTAMP = (
    "Not an ISO 8601 timestamp of the years 1970 to 2099 such as "
    "2024-06-12T12:00:00.000Z (a Z or an offset, at most milliseconds)."
)


# The records of a batch mostly share their timestamps (what a producer sent in one
# millisecond): each text is checked and parsed once. A text refused raises, and is not kept.
@functools.lru_cache(maxsize=4096)
def _timestamp_of(value: str) -> datetime:
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(_NOT_A_TIMESTAMP)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"Not a valid date and time: {value}.") from None
    if moment < EARLIEST:
        raise ValueError(f"Out of range. {TIMESTAMP_RANGE}")
    return moment


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
        metadata = {
            "minLength": 1,
            "maxLength": max_length,
            "pattern": documented(TEXT_PATTERN),
            **kwargs.pop("metadata", {}),
        }
        super().__init__(required=True, metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= self.max_length:
            raise ValidationError(f"Length must be between 1 and {self.max_length}.")
        if "\x00" in text:
            raise ValidationError("Must not contain the NUL character.")
        if _BLANK.fullmatch(text):
            raise ValidationError("Must not be blank.")
        return text


class UtcDateTime(fields.DateTime):
    """An instant in the documented form and range, read by ``parse_timestamp``."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = kwargs.pop("metadata", {})
        description = metadata.pop("description", "")
        metadata = {
            "pattern": documented(TIMESTAMP_PATTERN),
            "description": f"{description} {TIMESTAMP_RANGE}".strip(),
            **metadata,
        }
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            return parse_timestamp(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class Money(fields.Decimal):
    """A JSON number (never text or a boolean) from 0 to ``PRICE_MAX``, in cents at most."""

    def __init__(self, **kwargs: Any) -> None:
        # Documented as JSON numbers; the check compares exact decimals.
        metadata = {
            "minimum": 0,
            "maximum": float(PRICE_MAX),
            "multipleOf": 0.01,
            **kwargs.pop("metadata", {}),
        }
        super().__init__(
            required=True,
            allow_nan=False,
            validate=[validate.Range(min=0, max=PRICE_MAX), _cents],
            metadata=metadata,
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        # A JSON number arrives as an int, a float, or (read by jsoncodec.loads_exact) a
        # Decimal; text and booleans are refused.
        if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _text(max_length: int, **kwargs: Any) -> Text:
    return Text(max_length, **kwargs)


def _in_cents(value: decimal.Decimal) -> bool:
    exponent = value.normalize().as_tuple().exponent  # 100.500 has cents only
    return not (isinstance(exponent, int) and exponent < -2)


def _cents(value: decimal.Decimal) -> None:
    if not _in_cents(value):
        raise ValidationError("Must have at most 2 decimal places.")


def _money(**kwargs: Any) -> Money:
    return Money(**kwargs)


def _is_currency(value: str) -> None:
    if not _CURRENCY.fullmatch(value):
        raise ValidationError("Must be three upper-case letters (ISO 4217).")


def _currency(**kwargs: Any) -> fields.String:
    metadata = {"pattern": documented(CURRENCY_PATTERN), **kwargs.pop("metadata", {})}
    return fields.String(required=True, validate=_is_currency, metadata=metadata, **kwargs)


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
    timestamp = UtcDateTime(
        required=True, metadata={"example": "2024-06-12T12:00:00.000Z", "description": FUTURE_BOUND}
    )


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


# The media type of an event on produtos-persistidos and the version of its schema (the
# TransformedProductSchema). Within a version fields are only added; removing, renaming or
# retyping one, or making it nullable, is a new version (docs/topics.md), checked against
# docs/asyncapi-baseline/produtos-persistidos-v<version>.json.
EVENT_VERSION = 1
EVENT_CONTENT_TYPE = f"application/json; version={EVENT_VERSION}"

MANUAL_PRODUCT = ManualProductSchema()
MANUAL_FIELDS = tuple(MANUAL_PRODUCT.fields)  # in the order marshmallow returns them
TRANSFORMED_PRODUCT = TransformedProductSchema()


def load_manual(data: Any) -> ManualProduct:
    """Validate an input record; raises ``ValidationError`` naming every bad field."""
    product: ManualProduct = MANUAL_PRODUCT.load(_object(data))
    return product


def check_manual(data: Any) -> ManualProduct:
    """``load_manual`` at a fraction of its cost for the plainly valid records that make up
    nearly all traffic: the scheduler's check of every record it consumes.

    A record whose every field has its usual type and passes the same checks is returned
    as marshmallow would return it; anything else (a bad, missing or unusually typed field,
    say) goes to ``load_manual``, which gives the verdict and names the fields. A test holds
    the two equal over generated records, valid and invalid.
    """
    product = _plain_manual(data)
    return product if product is not None else load_manual(data)


def _plain_manual(data: Any) -> ManualProduct | None:
    if type(data) is not dict:
        return None
    try:
        product: dict[str, Any] = {field: data[field] for field in MANUAL_FIELDS}
    except KeyError:
        return None
    currency, quantity = product["currency"], product["stockQuantity"]
    if (
        _plain_text(product["productId"], ID_MAX)
        and _plain_text(product["productName"], NAME_MAX)
        and _plain_text(product["productDescription"], DESCRIPTION_MAX)
        and _plain_text(product["category"], NAME_MAX)
        and type(currency) is str
        and _CURRENCY.fullmatch(currency)
        and type(quantity) is int
        and 0 <= quantity <= QUANTITY_MAX
    ):
        price = _plain_money(product["price"])
        if price is not None:
            product["price"] = price
            return cast(ManualProduct, product)
    return None


def _plain_text(value: Any, max_length: int) -> bool:
    """What ``Text`` accepts, for a value that is a ``str``."""
    return (
        type(value) is str
        and 1 <= len(value) <= max_length
        and "\x00" not in value
        and not _BLANK.fullmatch(value)
    )


def _plain_money(value: Any) -> decimal.Decimal | None:
    """What ``Money`` makes of a JSON number as loads_exact reads it (an int, or a Decimal
    spelling its digits), or None when marshmallow must judge it."""
    if type(value) is int:
        value = decimal.Decimal(value)
    if (
        type(value) is decimal.Decimal
        and value.is_finite()
        and 0 <= value <= PRICE_MAX
        and _in_cents(value)
    ):
        return value
    return None


def load_transformed(data: Any) -> TransformedProduct:
    """Validate a transformed record; raises ``ValidationError`` naming every bad field."""
    product: TransformedProduct = TRANSFORMED_PRODUCT.load(_object(data))
    return product


def check_transformed(data: Any) -> TransformedProduct:
    """``load_transformed`` at a fraction of its cost for the plainly valid records that
    make up nearly all traffic: the API's check of every record the scheduler posts.

    As ``check_manual`` does for input records: a record whose every field has its usual
    type and passes the same checks is returned as marshmallow would return it; anything
    else goes to ``load_transformed``, which gives the verdict and names the fields. A test
    holds the two equal over generated records, valid and invalid.
    """
    product = _plain_transformed(data)
    return product if product is not None else load_transformed(data)


def _plain_transformed(data: Any) -> TransformedProduct | None:
    """The transformed record ``load_transformed`` would return, when the record is plainly
    valid; None when marshmallow must judge it."""
    if type(data) is not dict:
        return None
    try:
        product_id, name, description = data["id"], data["name"], data["description"]
        pricing, availability, category = data["pricing"], data["availability"], data["category"]
        if type(pricing) is not dict or type(availability) is not dict:
            return None
        amount, currency = pricing["amount"], pricing["currency"]
        quantity, timestamp = availability["quantity"], availability["timestamp"]
    except KeyError:
        return None
    if not (
        _plain_text(product_id, ID_MAX)
        and _plain_text(name, NAME_MAX)
        and _plain_text(description, DESCRIPTION_MAX)
        and _plain_text(category, NAME_MAX)
        and type(currency) is str
        and _CURRENCY.fullmatch(currency)
        and type(quantity) is int
        and 0 <= quantity <= QUANTITY_MAX
        and type(timestamp) is str
    ):
        return None
    amount = _plain_money(amount)
    if amount is None:
        return None
    try:
        moment = parse_timestamp(timestamp)
    except ValueError:
        return None
    return {
        "id": product_id,
        "name": name,
        "description": description,
        "pricing": {"amount": amount, "currency": currency},
        "availability": {"quantity": quantity, "timestamp": moment},
        "category": category,
    }


def field_errors(error: ValidationError) -> Any:
    """The messages of a validation error, keyed by field (nested for nested records; an
    item of a list by its index, as text, so that the messages are JSON)."""
    return _text_keys(error.messages)


def _text_keys(messages: Any) -> Any:
    if isinstance(messages, dict):
        return {str(key): _text_keys(value) for key, value in messages.items()}
    return messages


def _object(data: Any) -> Any:
    # marshmallow answers a list with a message under "_schema"; say what was expected.
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    return data
