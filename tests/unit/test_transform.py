"""The scheduler's transform: a pure function of the input record and its Kafka timestamp."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.common import jsoncodec
from services.common import transform as transform_module
from services.common.contracts import load_manual, load_transformed
from services.common.transform import format_timestamp, kafka_timestamp, transform

from .fakes import EXAMPLE_TIMESTAMP_MS

# DESIGN.md, "Message formats" (the first record re-wrapped to keep lines short).
DESIGN_INPUT = """
{"productId": "12369", "productName": "Nome do Produto",
 "productDescription": "Descrição do Produto",
 "price": 100.0, "currency": "BRL", "stockQuantity": 50, "category": "Categoria do Produto"}
"""
DESIGN_OUTPUT = """
{"id": "12369", "name": "Nome do Produto", "description": "Descrição do Produto",
 "pricing": {"amount": 100.0, "currency": "BRL"},
 "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00Z"},
 "category": "Categoria do Produto"}
"""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def design_example() -> Any:
    return load_manual(jsoncodec.loads(DESIGN_INPUT))


def test_the_example_timestamp_is_noon_of_2024_06_12_utc() -> None:
    assert kafka_timestamp(EXAMPLE_TIMESTAMP_MS) == datetime(2024, 6, 12, 12, tzinfo=UTC)


def test_transform_maps_every_field_of_the_design_example() -> None:
    assert transform(design_example(), EXAMPLE_TIMESTAMP_MS) == {
        "id": "12369",
        "name": "Nome do Produto",
        "description": "Descrição do Produto",
        "pricing": {"amount": Decimal("100.0"), "currency": "BRL"},
        "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00.000Z"},
        "category": "Categoria do Produto",
    }


def test_the_transformed_example_as_json_is_the_design_output_with_milliseconds() -> None:
    expected = jsoncodec.loads(DESIGN_OUTPUT)
    expected["availability"]["timestamp"] = "2024-06-12T12:00:00.000Z"

    sent = jsoncodec.dumps(transform(design_example(), EXAMPLE_TIMESTAMP_MS))

    assert jsoncodec.loads(sent) == expected
    assert list(jsoncodec.loads(sent)) == list(expected)  # in the contract's key order


def test_the_transformed_record_satisfies_the_transformed_contract() -> None:
    sent = jsoncodec.dumps(transform(design_example(), EXAMPLE_TIMESTAMP_MS))

    product = load_transformed(jsoncodec.loads(sent))

    assert product["pricing"]["amount"] == Decimal("100")
    assert product["availability"]["timestamp"] == datetime(2024, 6, 12, 12, tzinfo=UTC)


def test_the_same_record_and_timestamp_give_the_same_output() -> None:
    first = transform(design_example(), EXAMPLE_TIMESTAMP_MS)
    second = transform(design_example(), EXAMPLE_TIMESTAMP_MS)

    assert first == second
    assert jsoncodec.dumps(first) == jsoncodec.dumps(second)


def test_transform_reads_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    class ClocklessDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> ClocklessDatetime:
            raise AssertionError("the transform read the clock")

        @classmethod
        def utcnow(cls) -> ClocklessDatetime:
            raise AssertionError("the transform read the clock")

        @classmethod
        def today(cls) -> ClocklessDatetime:
            raise AssertionError("the transform read the clock")

    monkeypatch.setattr(transform_module, "datetime", ClocklessDatetime)

    output = transform(design_example(), EXAMPLE_TIMESTAMP_MS)

    assert output["availability"]["timestamp"] == "2024-06-12T12:00:00.000Z"


def test_the_timestamp_is_the_source_records_not_the_time_of_transforming() -> None:
    output = transform(design_example(), 0)

    assert output["availability"]["timestamp"] == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("timestamp_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (EXAMPLE_TIMESTAMP_MS + 1, "2024-06-12T12:00:00.001Z"),
        (EXAMPLE_TIMESTAMP_MS + 123, "2024-06-12T12:00:00.123Z"),
        (EXAMPLE_TIMESTAMP_MS + 999, "2024-06-12T12:00:00.999Z"),
        (EXAMPLE_TIMESTAMP_MS + 1000, "2024-06-12T12:00:01.000Z"),
        (4102444799999, "2099-12-31T23:59:59.999Z"),
    ],
)
def test_the_timestamp_keeps_its_milliseconds(timestamp_ms: int, text: str) -> None:
    assert transform(design_example(), timestamp_ms)["availability"]["timestamp"] == text


def test_a_timestamp_in_another_zone_is_written_in_utc() -> None:
    moment = datetime(2024, 6, 12, 9, 0, 0, 123000, tzinfo=timezone(timedelta(hours=-3)))

    assert format_timestamp(moment) == "2024-06-12T12:00:00.123Z"


def test_format_timestamp_writes_any_instant_in_utc_to_the_millisecond() -> None:
    rng = random.Random(20261204)
    for _ in range(2000):
        offset = timezone(timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        utc = EPOCH + timedelta(microseconds=rng.randrange(0, 4102444800 * 10**6))
        moment = utc.astimezone(rng.choice([UTC, timezone(timedelta(0)), offset]))

        text = format_timestamp(moment)

        assert text == utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def test_kafka_timestamp_and_format_timestamp_agree_over_many_instants() -> None:
    rng = random.Random(20240612)
    samples = [0, 1, 999, 1000, EXAMPLE_TIMESTAMP_MS] + [
        rng.randrange(0, 4102444800000) for _ in range(2000)
    ]

    for timestamp_ms in samples:
        moment = kafka_timestamp(timestamp_ms)
        text = format_timestamp(moment)

        assert moment.utcoffset() == timedelta(0)
        assert moment == EPOCH + timedelta(milliseconds=timestamp_ms)
        assert text.endswith("Z")
        assert len(text) == len("2024-06-12T12:00:00.000Z")
        assert datetime.fromisoformat(text) == moment
        assert (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1) == timestamp_ms
