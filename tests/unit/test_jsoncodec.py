"""JSON on the hot path: money as JSON numbers that keep their value, text as UTF-8."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from services.common import jsoncodec
from services.common.contracts import PRICE_LIMIT, load_transformed

LARGEST_PRICE = Decimal("999999999999.99")


def cents_sample(count: int, seed: int = 20240612) -> list[Decimal]:
    """Edge amounts and a seeded random sample of cents values below ``PRICE_LIMIT``."""
    rng = random.Random(seed)
    largest_cents = PRICE_LIMIT * 100 - 1
    edges = [0, 1, 5, 10, 99, 100, 10050, 123456, largest_cents - 1, largest_cents]
    # Uniform over the range, and uniform over the number of digits (small amounts too).
    uniform = [rng.randint(0, largest_cents) for _ in range(count // 2)]
    by_digits = [rng.randint(0, 10 ** rng.randint(1, 14) - 1) for _ in range(count - count // 2)]
    return [Decimal(cents).scaleb(-2) for cents in edges + uniform + by_digits]


def test_the_sample_spans_every_magnitude_up_to_the_largest_price() -> None:
    sample = cents_sample(10_000)

    assert max(sample) == LARGEST_PRICE
    assert {len(amount.as_tuple().digits) for amount in sample} == set(range(1, 15))


def test_money_of_up_to_fourteen_digits_parses_back_to_the_same_decimal() -> None:
    for amount in cents_sample(10_000):
        text = jsoncodec.dumps(amount)

        assert Decimal(text.decode()) == amount, text  # the JSON number spells the amount
        assert Decimal(str(jsoncodec.loads(text))) == amount, text  # and parses back to it


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0"), b"0.0"),
        (Decimal("0.01"), b"0.01"),
        (Decimal("0.1"), b"0.1"),
        (Decimal("100.50"), b"100.5"),
        (Decimal("1234.56"), b"1234.56"),
        (LARGEST_PRICE, b"999999999999.99"),
    ],
)
def test_money_is_written_as_a_json_number(amount: Decimal, text: bytes) -> None:
    assert jsoncodec.dumps({"amount": amount}) == b'{"amount":' + text + b"}"


def test_money_through_json_satisfies_the_contract_with_the_same_value() -> None:
    for amount in cents_sample(200, seed=7):
        record: dict[str, Any] = {
            "id": "12369",
            "name": "Nome do Produto",
            "description": "Descrição do Produto",
            "pricing": {"amount": amount, "currency": "BRL"},
            "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00.000Z"},
            "category": "Categoria do Produto",
        }

        product = load_transformed(jsoncodec.loads(jsoncodec.dumps(record)))

        assert product["pricing"]["amount"] == amount


def test_unicode_is_written_as_utf8_not_escaped() -> None:
    text = "Descrição do Produto: maçã, café ✓ 🍍 中文"

    data = jsoncodec.dumps({"description": text})

    assert data == b'{"description":"' + text.encode("utf-8") + b'"}'
    assert b"\\u" not in data
    assert jsoncodec.loads(data) == {"description": text}


def test_text_and_bytes_are_both_parsed() -> None:
    assert jsoncodec.loads('{"a": "ç"}') == jsoncodec.loads('{"a": "ç"}'.encode()) == {"a": "ç"}


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), b"bytes", complex(1, 2), {"nested": [frozenset()]}],
    ids=["set", "object", "bytes", "complex", "nested-frozenset"],
)
def test_a_value_json_cannot_carry_raises_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps(value)


def test_malformed_json_raises_the_codecs_decode_error() -> None:
    with pytest.raises(jsoncodec.JSONDecodeError):
        jsoncodec.loads(b"{not json")


def test_nesting_up_to_the_limit_parses_and_deeper_is_invalid_json() -> None:
    limit = jsoncodec.MAX_DEPTH
    assert jsoncodec.loads("[" * limit + "]" * limit) is not None
    assert jsoncodec.loads('{"a":' * (limit - 1) + "{}" + "}" * (limit - 1)) is not None
    assert jsoncodec.loads_exact('{"a":' * (limit - 1) + "[1.5]" + "}" * (limit - 1)) is not None

    for deeper in (
        "[" * (limit + 1) + "]" * (limit + 1),
        '{"price":' + "[" * 1000 + "1" + "]" * 1000 + "}",  # orjson's own limit is 1,024
        '[{"a": [{}]}, ' + "[" * limit + "]" * limit + "]",
        '[{"a":[{}]},' + "[" * limit + "]" * limit + "]",  # as orjson writes it
    ):
        for load in (jsoncodec.loads, jsoncodec.loads_exact):
            with pytest.raises(jsoncodec.JSONDecodeError, match="nested deeper"):
                load(deeper)


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("1e-400", Decimal("1E-400")),  # a double: 0.0
        ("0.1000000000000000001", Decimal("0.1000000000000000001")),  # a double: 0.1
        ("100.50", Decimal("100.50")),
        ("-0.0", Decimal("-0.0")),
        ("123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_loads_exact_keeps_every_number_as_written(text: str, exact: Decimal | int) -> None:
    data = jsoncodec.loads_exact(f'{{"price": {text}, "n": [1, {{"x": "ç"}}]}}'.encode())

    assert data == {"price": exact, "n": [1, {"x": "ç"}]}
    assert type(data["price"]) is type(exact)


def test_loads_exact_is_as_strict_as_loads() -> None:
    for text in (b"NaN", b'{"a": Infinity}', b'"\\ud800"', b"\xff", b"[" * 65 + b"]" * 65):
        with pytest.raises(jsoncodec.JSONDecodeError):
            jsoncodec.loads_exact(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"price": -5, "price": 1}', "price"),
        ('{"pricing": {"amount": 1, "currency": "BRL", "amount": -5}}', "amount"),
        ('[{"id": "a"}, {"id": "b", "id": "c"}]', "id"),
        ('{"t": "12:00:00Z", "t": "13:00:00Z"}', "t"),  # colons in the values
        ('{"a:b": 1, "a:b": 2}', "a:b"),  # and in the key
        ('{"x": "\\u003a", "a": 1, "a": 2}', "a"),  # an escaped colon beside it
        ('{"pre\\u00e7o": 1, "preço": 2}', "preço"),  # one key, spelled two ways
        ('{"price": 1.5, "price": 2.5}', "price"),  # numbers read exactly
    ],
)
def test_loads_exact_refuses_an_object_naming_a_key_twice_and_names_it(text: str, key: str) -> None:
    compact = text.replace(": ", ":").replace(", ", ",")  # as orjson writes, but for the key
    for data in (text, text.encode(), compact, compact.encode()):
        with pytest.raises(jsoncodec.DuplicateKeyError) as refused:
            jsoncodec.loads_exact(data)

        assert refused.value.key == key
        assert str(refused.value) == f"the key {key!r} appears twice in one object"


@pytest.mark.parametrize(
    "text",
    [
        '{"t": "2024-06-12T12:00:00Z", "url": "http://x:80/a:b", "::": ":"}',
        '{"x": "\\u003a", "y": "\\u003A"}',
        '{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}',
        '["a:b", {"c": "d"}, ":"]',
    ],
)
def test_loads_exact_takes_colons_in_strings_and_equal_keys_in_different_objects(
    text: str,
) -> None:
    assert jsoncodec.loads_exact(text) == json.loads(text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=':ab\\"ç\x01'),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=":ab\\ç", max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_loads_exact_reads_back_whatever_json_without_duplicates_says(value: object) -> None:
    assert jsoncodec.loads_exact(json.dumps(value)) == value
    assert jsoncodec.loads_exact(json.dumps(value, ensure_ascii=False).encode()) == value


NUMBERS = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.sampled_from([Decimal("100.50"), Decimal("1E+2"), Decimal("-0.0"), Decimal("1E-400")])
)
JSON_WITH_NUMBERS = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(alphabet=':ab\\"ç'),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=":abç", max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


def exactly(value: Any) -> Any:
    """A parsed value with its types, and each Decimal as its digits and exponent."""
    if isinstance(value, dict):
        return {key: exactly(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exactly(item) for item in value]
    return (type(value), value.as_tuple() if isinstance(value, Decimal) else value)


def text_of(value: Any, colon: str, comma: str) -> str:
    """JSON text of a value with the given separators, each number as Python spells it (a
    Decimal as its own digits: 100.50, 1E+2, 1E-400)."""
    if isinstance(value, dict):
        members = (
            json.dumps(key) + colon + text_of(item, colon, comma) for key, item in value.items()
        )
        return "{" + comma.join(members) + "}"
    if isinstance(value, list):
        return "[" + comma.join(text_of(item, colon, comma) for item in value) + "]"
    if isinstance(value, Decimal | float):
        return str(value) if isinstance(value, Decimal) else repr(value)
    return json.dumps(value, ensure_ascii=False)


@seed(20261204)
@settings(max_examples=300, deadline=None)
@given(JSON_WITH_NUMBERS)
def test_loads_exact_reads_every_number_as_written_in_compact_and_spaced_text(
    value: object,
) -> None:
    """Text as orjson writes it (read without a second parse) and as other writers do."""
    texts = [
        text_of(value, ": ", ", "),
        text_of(value, ":", ","),
        jsoncodec.dumps(value).decode(),
    ]
    for text in texts:
        expected = json.loads(text, parse_float=Decimal)
        for data in (text, text.encode()):
            assert exactly(jsoncodec.loads_exact(data)) == exactly(expected), data


def test_integers_beyond_64_bits_are_written_exactly() -> None:
    assert jsoncodec.dumps({"a": 2**64, "b": "é"}) == '{"a":18446744073709551616,"b":"é"}'.encode()
    assert jsoncodec.loads_exact(jsoncodec.dumps([-(2**70)])) == [-(2**70)]
