"""The record contracts: what a valid record is, and how every bad field is named."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.api.handlers import load_item
from services.common import contracts, jsoncodec
from services.common.contracts import (
    CURRENCY_PATTERN,
    TEXT_PATTERN,
    TIMESTAMP_PATTERN,
    check_manual,
    check_transformed,
    documented,
    field_errors,
    load_manual,
    load_transformed,
)

from ..helpers import manual_record, transformed_record

MANUAL_FIELDS = {
    "productId",
    "productName",
    "productDescription",
    "price",
    "currency",
    "stockQuantity",
    "category",
}
TEXT_LIMITS = [
    ("productId", 64),
    ("productName", 255),
    ("productDescription", 4096),
    ("category", 255),
]
UNICODE_TEXTS = [
    "Açúcar mascavo — orgânico, maçã, pão de queijo",
    "Café com leite, é ou não é? Ü ß Ø",
    "Pacote de 1 kg ✓ 🍍🥥👍🏽",
    "中文商品名 日本語の説明 한국어",
]


Load = Callable[[Any], Any]


def scheduler_check(data: Any) -> Any:
    """What the scheduler makes of ``data`` sent as a record: its JSON text read with
    ``loads_exact``, then ``check_manual``."""
    return check_manual(jsoncodec.loads_exact(jsoncodec.dumps(data)))


@pytest.fixture(params=[load_manual, scheduler_check], ids=["marshmallow", "scheduler-check"])
def load(request: pytest.FixtureRequest) -> Load:
    """Each input-record case is held by marshmallow and by the scheduler's cheaper check."""
    loader: Load = request.param
    return loader


def api_check(data: Any) -> Any:
    """What the API makes of ``data`` posted as a transformed record: its JSON text read
    with ``loads_exact``, then ``check_transformed``."""
    return check_transformed(jsoncodec.loads_exact(jsoncodec.dumps(data)))


@pytest.fixture(params=[load_transformed, api_check], ids=["marshmallow", "api-check"])
def load_api(request: pytest.FixtureRequest) -> Load:
    """Each transformed-record case is held by marshmallow and by the API's cheaper check."""
    loader: Load = request.param
    return loader


def errors(load: Callable[[Any], object], data: Any) -> Any:
    """The field messages of the validation error ``load(data)`` raises."""
    with pytest.raises(ValidationError) as caught:
        load(data)
    return field_errors(caught.value)


def with_price_literal(literal: str) -> Any:
    """An input record parsed from JSON text whose price is written exactly as given."""
    record = manual_record("12369")
    del record["price"]
    text = jsoncodec.dumps(record).decode()
    return jsoncodec.loads(text[:-1] + f',"price":{literal}}}')


# --- input records (cadastro-produtos, POST /produto/manual) -------------------------------


def test_a_valid_input_record_loads_with_every_field_and_an_exact_decimal_price(load: Load) -> None:
    product = load(manual_record("12369", price=1234.56))

    assert product == {
        "productId": "12369",
        "productName": "Nome do Produto",
        "productDescription": "Descrição do Produto",
        "price": Decimal("1234.56"),
        "currency": "BRL",
        "stockQuantity": 50,
        "category": "Categoria do Produto",
    }
    assert isinstance(product["price"], Decimal)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("1234.56", Decimal("1234.56")),
        ("0.1", Decimal("0.1")),
        ("0.01", Decimal("0.01")),
        ("0", Decimal("0")),
        ("100", Decimal("100")),
        ("100.50", Decimal("100.5")),
        ("100.5", Decimal("100.5")),
        ("100.500", Decimal("100.5")),
        ("999999999999.99", Decimal("999999999999.99")),
    ],
)
def test_a_json_number_price_becomes_the_decimal_it_spells(
    literal: str, expected: Decimal, load: Load
) -> None:
    price = load(with_price_literal(literal))["price"]

    assert isinstance(price, Decimal)
    assert price == expected  # the digits written, not the binary double's expansion


@pytest.mark.parametrize("price", ["100", "100.500", "1e2"])
def test_a_price_given_as_text_is_named(price: str, load: Load) -> None:
    assert set(errors(load, manual_record("12369", price=price))) == {"price"}


@pytest.mark.parametrize(
    "price",
    [
        pytest.param(-0.01, id="negative"),
        pytest.param(-1, id="negative-integer"),
        pytest.param(1.005, id="three-decimal-places"),
        pytest.param("0.001", id="three-decimal-places-as-text"),
        pytest.param(10**12, id="ten-to-the-twelve"),
        pytest.param(10**12 + 0.01, id="above-ten-to-the-twelve"),
        pytest.param("NaN", id="NaN"),
        pytest.param("nan", id="nan"),
        pytest.param("Infinity", id="Infinity"),
        pytest.param("-Infinity", id="minus-Infinity"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="null"),
        pytest.param("cem reais", id="words"),
        pytest.param([100], id="list"),
    ],
)
def test_a_bad_price_is_named(price: Any, load: Load) -> None:
    assert set(errors(load, manual_record("12369", price=price))) == {"price"}


@pytest.mark.parametrize("quantity", [0, 1, 2**31 - 1])
def test_a_stock_quantity_from_zero_to_the_int32_maximum_is_accepted(
    quantity: int, load: Load
) -> None:
    assert load(manual_record("12369", stockQuantity=quantity))["stockQuantity"] == quantity


@pytest.mark.parametrize(
    "quantity",
    [
        pytest.param(2.5, id="fraction"),
        pytest.param(5.0, id="float"),
        pytest.param("5", id="text"),
        pytest.param(-1, id="negative"),
        pytest.param(2**31, id="above-int32"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="null"),
    ],
)
def test_a_bad_stock_quantity_is_named(quantity: Any, load: Load) -> None:
    assert set(errors(load, manual_record("12369", stockQuantity=quantity))) == {"stockQuantity"}


@pytest.mark.parametrize("currency", ["BRL", "USD", "EUR"])
def test_a_currency_of_three_upper_case_letters_is_accepted(currency: str, load: Load) -> None:
    assert load(manual_record("12369", currency=currency))["currency"] == currency


@pytest.mark.parametrize(
    "currency", ["brl", "Brl", "BR", "BRLL", "R$", "", "BRL\n", "\nBRL", " BRL", "BRL ", 986]
)
def test_a_currency_that_is_not_three_upper_case_letters_is_named(
    currency: Any, load: Load
) -> None:
    assert set(errors(load, manual_record("12369", currency=currency))) == {"currency"}


@pytest.mark.parametrize(("field", "limit"), TEXT_LIMITS)
def test_text_of_one_character_up_to_the_limit_is_accepted(
    field: str, limit: int, load: Load
) -> None:
    for text in ("x", "x" * limit, "ç" * limit):
        product: Any = load(manual_record("12369", **{field: text}))
        assert product[field] == text


@pytest.mark.parametrize(("field", "limit"), TEXT_LIMITS)
def test_text_one_character_over_the_limit_is_named(field: str, limit: int, load: Load) -> None:
    assert set(errors(load, manual_record("12369", **{field: "x" * (limit + 1)}))) == {field}


@pytest.mark.parametrize(("field", "limit"), TEXT_LIMITS)
def test_empty_or_non_text_values_are_named(field: str, limit: int, load: Load) -> None:
    for value in ("", None, 12369, ["x"]):
        assert set(errors(load, manual_record("12369", **{field: value}))) == {field}


def test_a_record_missing_every_field_names_all_seven(load: Load) -> None:
    messages = errors(load, {})

    assert set(messages) == MANUAL_FIELDS
    assert all(text == ["Missing data for required field."] for text in messages.values())


def test_every_bad_field_of_a_record_is_named_at_once(load: Load) -> None:
    record = manual_record("", price=-1, currency="brl", stockQuantity=2.5)

    assert set(errors(load, record)) == {"productId", "price", "currency", "stockQuantity"}


@pytest.mark.parametrize(
    "data", [[manual_record("12369")], "12369", 12369, None], ids=["list", "text", "number", "null"]
)
def test_a_json_value_that_is_not_an_object_is_refused_as_such(data: Any, load: Load) -> None:
    assert errors(load, data) == {"_schema": ["Expected a JSON object."]}


def test_unknown_extra_fields_are_dropped_not_rejected(load: Load) -> None:
    product = load(manual_record("12369", supplier="ACME", tags=["novo"], price=10))

    assert set(product) == MANUAL_FIELDS


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_unicode_text_round_trips_unchanged(text: str, load: Load) -> None:
    record = manual_record(text[:64], productName=text, productDescription=text * 3, category=text)

    product = load(jsoncodec.loads(jsoncodec.dumps(record)))

    assert product["productId"] == text[:64]
    assert product["productName"] == text
    assert product["productDescription"] == text * 3
    assert product["category"] == text


@pytest.mark.parametrize("field", [field for field, _ in TEXT_LIMITS])
def test_text_with_a_nul_character_is_named(field: str, load: Load) -> None:
    assert set(errors(load, manual_record("12369", **{field: "Nome\x00do Produto"}))) == {field}


# The scheduler's check: values at and past every bound, with the types JSON can give.
BORDER_TEXTS = [
    "x", "x" * 64, "x" * 65, "n" * 255, "n" * 256, "d" * 4096, "d" * 4097, "", " ", "\t\n",
    "\u00a0", "\u3000", "\ufeff", "\u200b", "a\x00b", "\x00", " a ", "ç" * 64, "🍍" * 65,
]  # fmt: skip
BORDER_NUMBERS = [
    "-0", "-0.0", "0", "0.0", "0e0", "-1", "1E2", "1e-400", "0.001", "0.005", "0.01",
    "100.50", "100.505", "100.500", "999999999999.99", "999999999999.995", "1000000000000",
    "2147483647", "2147483648", "0.1000000000000000000000000000001", "9" * 30,
    "true", "false", "null", '"100"', '"BRL"', "[]", "{}",
]  # fmt: skip
# Small integers (zero and either side of it) as often as any.
SMALL_OR_ANY_INTEGER = st.one_of(st.integers(-3, 3), st.integers(-5, 2**32))
CURRENCIES = ["BRL", "brl", "BRL\n", "BR", "BRLL", "ÇÃO", "US$", ""]


def odd_values(field: str) -> st.SearchStrategy[str]:
    """JSON text for one field of an input record: borderline, of another type, or any."""
    texts = st.one_of(
        st.sampled_from(BORDER_TEXTS),
        st.text(st.characters(codec="utf-8"), max_size=70),
    ).map(lambda text: jsoncodec.dumps(text).decode())
    numbers = st.one_of(st.sampled_from(BORDER_NUMBERS), SMALL_OR_ANY_INTEGER.map(str))
    prices = st.decimals(
        min_value=-1, max_value=Decimal("1e13"), allow_nan=False, allow_infinity=False
    ).map(str)
    currencies = st.sampled_from(CURRENCIES).map(lambda text: jsoncodec.dumps(text).decode())
    usual = {
        "price": prices,
        "stockQuantity": SMALL_OR_ANY_INTEGER.map(str),
        "currency": currencies,
    }.get(field, texts)
    return st.one_of(usual, numbers, texts)


VALID_VALUES = {
    "productId": st.sampled_from(["12369", "x" * 64, " a "]),
    "productName": st.sampled_from(["Nome do Produto", "n" * 255, "🍍"]),
    "productDescription": st.sampled_from(["Descrição do Produto", "d" * 4096]),
    "category": st.sampled_from(["Categoria do Produto", "c" * 255]),
    "currency": st.sampled_from(["BRL", "EUR"]),
    "price": st.sampled_from(["100", "100.5", "100.50", "0", "999999999999.99", "1E2"]),
    "stockQuantity": st.sampled_from(["0", "50", "2147483647"]),
}


@st.composite
def record_texts(draw: Any) -> str:
    """An input record's JSON text: valid, but for a field or two that may be borderline, of
    another type, or absent, and now and then an unknown field."""
    values = {
        field: jsoncodec.dumps(draw(strategy)).decode()
        if field not in ("price", "stockQuantity")
        else draw(strategy)
        for field, strategy in VALID_VALUES.items()
    }
    for field in draw(st.lists(st.sampled_from(sorted(MANUAL_FIELDS)), max_size=2)):
        if draw(st.integers(0, 9)):
            values[field] = draw(odd_values(field))
        else:
            values.pop(field, None)
    parts = [f'"{field}":{value}' for field, value in values.items()]
    if draw(st.booleans()):
        parts.append('"supplier":{"price":0.001}')
    return "{" + ",".join(parts) + "}"


def exactly(value: Any) -> Any:
    """A value with its types, dict keys in order, each Decimal as its digits and exponent
    (100.5 differs from 100.50) and each datetime with its offset: what ``==`` alone would
    not tell apart."""
    if isinstance(value, dict):
        return [(key, exactly(item)) for key, item in value.items()]
    if isinstance(value, Decimal):
        return (Decimal, value.as_tuple())
    if isinstance(value, datetime):
        return (datetime, value.isoformat())
    return (type(value), value)


def assert_same_verdict(
    plain: Callable[[Any], Any], load: Callable[[Any], Any], check: Callable[[Any], Any], data: Any
) -> None:
    """A fast path (``plain``, None when it declines) accepts only what marshmallow
    (``load``) accepts, with the same values, and ``check`` answers as marshmallow does:
    the same values, or the same messages."""
    fast = plain(data)
    try:
        expected = load(data)
    except ValidationError as error:
        assert fast is None, f"accepted what marshmallow refuses: {error.messages}"
        assert errors(check, data) == error.messages
        return
    assert fast is None or exactly(fast) == exactly(expected)
    assert exactly(check(data)) == exactly(expected)


def refuse_marshmallow(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    """Make ``contracts.<loader>`` fail the test if it is called at all."""

    def refuse(data: Any) -> Any:
        raise AssertionError(f"marshmallow was asked about {data}")

    monkeypatch.setattr(contracts, loader, refuse)


@seed(20261130)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_texts())
def test_the_scheduler_check_accepts_only_what_marshmallow_accepts_and_returns_the_same(
    text: str,
) -> None:
    data = jsoncodec.loads_exact(text)
    assert_same_verdict(contracts._plain_manual, load_manual, check_manual, data)


def test_the_scheduler_check_takes_usual_records_without_marshmallow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse_marshmallow(monkeypatch, "load_manual")
    for price in ("100", "100.5", "1234.56", "0", "999999999999.99"):
        record = manual_record("12369", stockQuantity=0)
        text = jsoncodec.dumps(record).decode().replace('"price":100.0', f'"price":{price}')
        product = check_manual(jsoncodec.loads_exact(text))
        assert product["price"] == Decimal(price)
        assert str(product["price"]) == price


# --- transformed records (POST /produto/scheduler, produtos-persistidos) --------------------


def test_a_valid_transformed_record_loads_with_an_exact_amount_and_an_aware_timestamp(
    load_api: Load,
) -> None:
    product = load_api(transformed_record("12369", pricing={"amount": 1234.56, "currency": "BRL"}))

    assert product == {
        "id": "12369",
        "name": "Nome do Produto",
        "description": "Descrição do Produto",
        "pricing": {"amount": Decimal("1234.56"), "currency": "BRL"},
        "availability": {"quantity": 50, "timestamp": datetime(2024, 6, 12, 12, tzinfo=UTC)},
        "category": "Categoria do Produto",
    }


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2024-06-12T12:00:00Z", timedelta(0)),
        ("2024-06-12T12:00:00.000Z", timedelta(0)),
        ("2024-06-12T14:00:00+02:00", timedelta(hours=2)),
        ("2024-06-12T09:00:00-03:00", timedelta(hours=-3)),
    ],
)
def test_a_timestamp_with_an_offset_is_kept_as_an_aware_datetime(
    text: str, offset: timedelta, load_api: Load
) -> None:
    availability = {"quantity": 50, "timestamp": text}

    moment = load_api(transformed_record("12369", availability=availability))["availability"][
        "timestamp"
    ]

    assert moment.utcoffset() == offset
    assert moment == datetime(2024, 6, 12, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-06-12T12:00:00",
        "2024-06-12T12:00:00.000",
        "ontem",
        "2024-06-12T12:00:00.000001Z",  # finer than the milliseconds that are stored
        "2024-06-12 12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-06-12T12:00:00Z\n",
        "0001-01-01T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z",
    ],
)
def test_a_naive_malformed_or_out_of_range_timestamp_is_named_under_availability(
    timestamp: str, load_api: Load
) -> None:
    availability = {"quantity": 50, "timestamp": timestamp}

    messages = errors(load_api, transformed_record("12369", availability=availability))

    assert set(messages) == {"availability"}
    assert set(messages["availability"]) == {"timestamp"}


def test_bad_nested_fields_are_named_under_pricing_and_availability(load_api: Load) -> None:
    record = transformed_record(
        "12369",
        pricing={"amount": "1.005", "currency": "brl"},
        availability={"quantity": -1},
    )

    messages = errors(load_api, record)

    assert set(messages) == {"pricing", "availability"}
    assert set(messages["pricing"]) == {"amount", "currency"}
    assert set(messages["availability"]) == {"quantity", "timestamp"}


def test_a_transformed_record_missing_every_field_names_all_six(load_api: Load) -> None:
    assert set(errors(load_api, {})) == {
        "id",
        "name",
        "description",
        "pricing",
        "availability",
        "category",
    }


@pytest.mark.parametrize(
    ("field", "limit"), [("id", 64), ("name", 255), ("description", 4096), ("category", 255)]
)
def test_transformed_text_is_bounded_like_the_input(field: str, limit: int, load_api: Load) -> None:
    product: Any = load_api(transformed_record("12369", **{field: "é" * limit}))
    assert product[field] == "é" * limit
    assert set(errors(load_api, transformed_record("12369", **{field: "é" * (limit + 1)}))) == {
        field
    }
    assert set(errors(load_api, transformed_record("12369", **{field: ""}))) == {field}


def test_a_transformed_json_list_is_refused_as_not_an_object(load_api: Load) -> None:
    assert errors(load_api, [transformed_record("12369")]) == {
        "_schema": ["Expected a JSON object."]
    }


VALID_TIMESTAMPS = [
    "2024-06-12T12:00:00Z", "2024-06-12T12:00:00.000Z", "2024-06-12T12:00:00.5+02:00",
    "2024-06-12T09:00:00.123-03:00", "1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z",
    "2024-02-29T12:00:00Z",
]  # fmt: skip
BORDER_TIMESTAMPS = [
    *VALID_TIMESTAMPS, "1970-01-01T00:30:00+01:00", "1969-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z", "2023-02-29T12:00:00Z", "2024-06-12T12:00:00",
    "2024-06-12T12:00:00.0001Z", "2024-06-12 12:00:00Z", "2024-06-12T12:00:00Z\n",
    "2024-06-12T24:00:00Z", "", "ontem",
]  # fmt: skip
TRANSFORMED_VALID = {
    "id": st.sampled_from(["12369", "x" * 64, " a "]),
    "name": st.sampled_from(["Nome do Produto", "n" * 255, "🍍"]),
    "description": st.sampled_from(["Descrição do Produto", "d" * 4096]),
    "category": st.sampled_from(["Categoria do Produto", "c" * 255]),
    "amount": st.sampled_from(["100", "100.5", "100.50", "0", "999999999999.99", "1E2"]),
    "currency": st.sampled_from(["BRL", "EUR"]),
    "quantity": st.sampled_from(["0", "50", "2147483647"]),
    "timestamp": st.sampled_from(VALID_TIMESTAMPS),
}
NUMERIC = ("amount", "quantity")


def odd_transformed(field: str) -> st.SearchStrategy[str]:
    """JSON text for one field of a transformed record: borderline, of another type, or any."""
    if field == "timestamp":
        stamps = st.one_of(
            st.sampled_from(BORDER_TIMESTAMPS),
            st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
        ).map(lambda text: jsoncodec.dumps(text).decode())
        return st.one_of(stamps, odd_values("productName"), odd_values("price"))
    if field in ("pricing", "availability"):
        return st.sampled_from(["null", "[]", "{}", '"x"', "1", '{"amount":1}'])
    return odd_values({"amount": "price", "quantity": "stockQuantity"}.get(field, field))


@st.composite
def transformed_texts(draw: Any) -> str:
    """A transformed record's JSON text: valid, but for a field or two (nested ones, or
    pricing and availability themselves) that may be borderline, of another type, or
    absent, and now and then an unknown field in each object."""
    values: dict[str, str | None] = {
        field: draw(strategy) if field in NUMERIC else jsoncodec.dumps(draw(strategy)).decode()
        for field, strategy in TRANSFORMED_VALID.items()
    }
    values["pricing"] = values["availability"] = ""  # made of their members below
    fields = sorted(values)
    for field in draw(st.lists(st.sampled_from(fields), max_size=2)):
        values[field] = draw(odd_transformed(field)) if draw(st.integers(0, 9)) else None
    unknown = draw(st.booleans())

    def record(*names: str) -> str:
        parts = [f'"{name}":{values[name]}' for name in names if values[name] is not None]
        return "{" + ",".join([*parts, '"supplier":{"price":0.001}'] if unknown else parts) + "}"

    if values["pricing"] == "":
        values["pricing"] = record("amount", "currency")
    if values["availability"] == "":
        values["availability"] = record("quantity", "timestamp")
    return record("id", "name", "description", "pricing", "availability", "category")


@seed(20261204)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transformed_texts())
def test_the_api_check_accepts_only_what_marshmallow_accepts_and_returns_the_same(
    text: str,
) -> None:
    data = jsoncodec.loads_exact(text)
    assert_same_verdict(contracts._plain_transformed, load_transformed, check_transformed, data)


def test_the_api_check_takes_the_schedulers_records_without_marshmallow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refuse_marshmallow(monkeypatch, "load_transformed")
    for amount in ("100", "100.5", "1234.56", "0", "999999999999.99"):
        for stamp in ("2024-06-12T12:00:00.000Z", "2024-06-12T09:00:00-03:00"):
            record = transformed_record("12369", stamp)
            text = jsoncodec.dumps(record).decode().replace('"amount":100.0', f'"amount":{amount}')
            product = check_transformed(jsoncodec.loads_exact(text))
            assert product["pricing"]["amount"] == Decimal(amount)
            assert str(product["pricing"]["amount"]) == amount
            assert product["availability"]["timestamp"] == datetime.fromisoformat(stamp)


@pytest.mark.parametrize("field", ["productId", "productName", "productDescription", "category"])
@pytest.mark.parametrize("blank", [" ", "   ", "\t\n", "\u00a0", "\u3000", "\ufeff"])
def test_blank_text_is_named(field: str, blank: str, load: Load) -> None:
    assert set(errors(load, manual_record("12369", **{field: blank}))) == {field}


def test_text_with_spaces_around_other_characters_is_kept_as_sent(load: Load) -> None:
    assert load(manual_record(" 12369 "))["productId"] == " 12369 "


def test_the_contract_takes_timestamps_from_the_epoch_on_and_leaves_the_future_to_the_api() -> None:
    for text in ("1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z"):
        availability = {"quantity": 1, "timestamp": text}
        load_transformed(transformed_record("12369", availability=availability))


@pytest.mark.parametrize(("seconds", "refused"), [(59, False), (61, True), (23 * 3600, True)])
def test_the_api_refuses_a_timestamp_beyond_the_tolerance_naming_the_field(
    seconds: int, refused: bool
) -> None:
    now = datetime(2024, 6, 12, 12, tzinfo=UTC)
    ahead = (now + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    item = {"product": transformed_record("12369", ahead)}

    if not refused:
        load_item(item, now=now, tolerance=60)
        return
    with pytest.raises(ValidationError) as caught:
        load_item(item, now=now, tolerance=60)
    [message] = field_errors(caught.value)["product"]["availability"]["timestamp"]
    assert message.startswith(f"Too far ahead: timestamp {ahead[:-1]}.000Z is {seconds}.000 s")
    assert "beyond the tolerance of 60 s (FUTURE_TIMESTAMP_TOLERANCE_SECONDS)" in message


@pytest.mark.parametrize(
    ("pattern", "field", "value"),
    [
        *((CURRENCY_PATTERN, "currency", v) for v in ("BRL", "brl", "BR", "BRL\n", " BRL")),
        *((TEXT_PATTERN, "productName", v) for v in ("Nome", " a ", " ", "\u3000", "a\x00b")),
        *(
            (TIMESTAMP_PATTERN, "timestamp", v)
            for v in (
                "2024-06-12T12:00:00Z",
                "2024-06-12T12:00:00.5+02:00",
                "2024-06-12T12:00:00",
                "2024-06-12T12:00:00.1234Z",
                "2024-06-12 12:00:00Z",
            )
        ),
    ],
)
def test_each_documented_pattern_accepts_exactly_what_the_check_accepts(
    pattern: str, field: str, value: str
) -> None:
    # The documented pattern read as JSON Schema does (ECMA 262: "$" only at the very end).
    assert documented(pattern) == f"^{pattern}$"
    documented_accepts = re.fullmatch(pattern, value) is not None
    load: Load
    if field == "timestamp":
        load, record = load_transformed, transformed_record("12369", value)
    else:
        load, record = load_manual, manual_record("12369", **{field: value})
    try:
        load(record)
    except ValidationError:
        assert not documented_accepts, f"{value!r} fits the documented pattern, yet is refused"
    else:
        assert documented_accepts, f"{value!r} is accepted, yet does not fit the pattern"


def test_the_timestamp_pattern_accepts_exactly_the_real_days_from_1970_to_2099() -> None:
    day = datetime(1969, 1, 1)
    while day.year <= 2100:
        text = day.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert bool(re.fullmatch(TIMESTAMP_PATTERN, text)) == (1970 <= day.year <= 2099), text
        day += timedelta(days=1)
    for year, month in ((2023, 2), (2024, 2), (2000, 2), (2024, 4), (1970, 1)):
        for number in range(28, 33):
            text = f"{year}-{month:02d}-{number:02d}T00:00:00Z"
            try:
                real = bool(datetime(year, month, number))
            except ValueError:
                real = False
            assert bool(re.fullmatch(TIMESTAMP_PATTERN, text)) == real, text


@pytest.mark.parametrize(
    "text",
    [
        "0032-06-12T12:00:00Z",
        "3014-06-12T12:00:00Z",
        "2100-01-01T00:00:00Z",
        "2024-00-12T12:00:00Z",
        "2024-06-12T24:00:00Z",
        "2024-06-12T12:60:00Z",
        "2024-06-12T12:00:60Z",
        "2024-06-12T12:00:00+24:00",
    ],
)
def test_the_timestamp_pattern_refuses_fields_out_of_their_range(text: str) -> None:
    assert re.fullmatch(TIMESTAMP_PATTERN, text) is None
    with pytest.raises(ValueError, match="years 1970 to 2099"):
        contracts.parse_timestamp(text)
