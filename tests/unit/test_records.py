"""From a Kafka record to the item the API persists, or to the reason it cannot be."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.common import jsoncodec
from services.common.transform import transform
from services.scheduler.records import (
    Intake,
    Poison,
    PoisonError,
    dead_letter_headers,
    decode,
    prepare,
    to_work,
    unreadable,
)

from ..helpers import encode, manual_record
from .fakes import EXAMPLE_TIMESTAMP_MS, FakeRecord


def poison_error(value: bytes | None) -> PoisonError:
    with pytest.raises(PoisonError) as caught:
        decode(value)
    return caught.value


def reported_fields(reason: str) -> Any:
    prefix = "invalid fields: "
    assert reason.startswith(prefix), reason
    return jsoncodec.loads(reason.removeprefix(prefix))


# --- decode -----------------------------------------------------------------------------------


def test_a_valid_value_decodes_to_the_manual_product() -> None:
    product = decode(encode(manual_record("12369", price=1234.56, productName="Pão de Açúcar")))

    assert product == {
        "productId": "12369",
        "productName": "Pão de Açúcar",
        "productDescription": "Descrição do Produto",
        "price": Decimal("1234.56"),
        "currency": "BRL",
        "stockQuantity": 50,
        "category": "Categoria do Produto",
    }


@pytest.mark.parametrize("value", [None, b""], ids=["tombstone", "empty"])
def test_an_empty_value_is_poison_at_decode(value: bytes | None) -> None:
    error = poison_error(value)

    assert (error.stage, error.reason) == ("decode", "empty value")


@pytest.mark.parametrize(
    "value",
    [b"\xff\xfe\xfd", b'{"productId": "\xe3o"}', b"\xc3\x28", "café".encode("latin-1")],
    ids=["garbage", "latin1-in-json", "bad-continuation", "latin1-text"],
)
def test_a_value_that_is_not_utf8_is_poison_at_decode_saying_so(value: bytes) -> None:
    error = poison_error(value)

    assert error.stage == "decode"
    assert "UTF-8" in error.reason


@pytest.mark.parametrize(
    "value", [b"{not json", b'{"productId": "1",}', b"12369 12369", b"   "], ids=str
)
def test_a_value_that_is_not_json_is_poison_at_decode(value: bytes) -> None:
    error = poison_error(value)

    assert error.stage == "decode"
    assert error.reason.startswith("value is not JSON: ")


def test_a_value_naming_a_key_twice_is_poison_at_decode_naming_the_key() -> None:
    error = poison_error(b'{"productId": "1", "price": -5, "price": 1}')

    assert (error.stage, error.reason) == (
        "decode",
        "value is not JSON: the key 'price' appears twice in one object",
    )


def test_a_record_with_bad_fields_is_poison_at_validate_naming_every_field() -> None:
    value = encode(manual_record("12369", price=-1, currency="brl", stockQuantity="5"))

    error = poison_error(value)

    assert error.stage == "validate"
    assert set(reported_fields(error.reason)) == {"price", "currency", "stockQuantity"}


def test_a_record_missing_fields_is_poison_at_validate_naming_them() -> None:
    error = poison_error(b'{"productId": "12369"}')

    assert error.stage == "validate"
    assert set(reported_fields(error.reason)) == {
        "productName",
        "productDescription",
        "price",
        "currency",
        "stockQuantity",
        "category",
    }


@pytest.mark.parametrize("value", [b"[]", b"null", b'"12369"', b"42"])
def test_json_that_is_not_an_object_is_poison_at_validate(value: bytes) -> None:
    error = poison_error(value)

    assert error.stage == "validate"
    assert reported_fields(error.reason) == {"_schema": ["Expected a JSON object."]}


# --- to_work and prepare ------------------------------------------------------------------


def test_a_valid_record_becomes_its_transformed_product_and_its_source() -> None:
    record = FakeRecord(
        encode(manual_record("12369")),
        topic="cadastro-produtos",
        partition=4,
        offset=1017,
        timestamp=EXAMPLE_TIMESTAMP_MS + 250,
    )

    work = to_work(record)

    assert work.record is record
    assert work.item == {
        "product": {
            "id": "12369",
            "name": "Nome do Produto",
            "description": "Descrição do Produto",
            "pricing": {"amount": Decimal("100.0"), "currency": "BRL"},
            "availability": {"quantity": 50, "timestamp": "2024-06-12T12:00:00.250Z"},
            "category": "Categoria do Produto",
        },
        "source": {
            "topic": "cadastro-produtos",
            "partition": 4,
            "offset": 1017,
            "incarnation": None,
        },
        "traceparent": work.trace.traceparent,
    }


def test_the_work_item_is_the_transform_of_the_decoded_record_at_its_timestamp() -> None:
    record = FakeRecord(encode(manual_record("12369", price=9.99)), timestamp=1)

    assert to_work(record).item["product"] == transform(decode(record.value), 1)


def test_a_bad_record_raises_poison_instead_of_becoming_work() -> None:
    with pytest.raises(PoisonError) as caught:
        to_work(FakeRecord(b"{not json"))

    assert caught.value.stage == "decode"


def test_prepare_splits_a_batch_into_work_and_poison_each_in_order() -> None:
    records = [
        FakeRecord(encode(manual_record("a")), offset=10),
        FakeRecord(b"{not json", offset=11),
        FakeRecord(encode(manual_record("b")), offset=12),
        FakeRecord(None, offset=13),
        FakeRecord(encode(manual_record("c", price=-1)), offset=14),
        FakeRecord(b"\xff", offset=15),
        FakeRecord(encode(manual_record("d")), offset=16),
    ]

    work, poison = prepare(records)

    assert [w.record for w in work] == [records[0], records[2], records[6]]
    assert [w.item["product"]["id"] for w in work] == ["a", "b", "d"]
    assert [w.item["source"]["offset"] for w in work] == [10, 12, 16]
    assert [(p.record, p.stage) for p in poison] == [
        (records[1], "decode"),
        (records[3], "decode"),
        (records[4], "validate"),
        (records[5], "decode"),
    ]
    assert poison[1].reason == "empty value"
    assert "UTF-8" in poison[3].reason


def test_prepare_of_nothing_is_nothing() -> None:
    assert prepare([]) == ([], [])


NOW = datetime(2024, 6, 12, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def test_a_record_stamped_beyond_the_tolerance_is_poison_at_validate_naming_both() -> None:
    records = [
        FakeRecord(encode(manual_record("a")), offset=1, timestamp=NOW_MS + 60_000),
        FakeRecord(encode(manual_record("b")), offset=2, timestamp=NOW_MS + 60_001),
        FakeRecord(encode(manual_record("c")), offset=3, timestamp=2**63 - 1),
    ]

    work, poison = prepare(records, Intake(NOW, tolerance=60))

    assert [w.item["product"]["id"] for w in work] == ["a"]
    assert [(p.record.offset, p.stage) for p in poison] == [(2, "validate"), (3, "validate")]
    assert poison[0].reason == (
        "timestamp 2024-06-12T12:01:00.001Z is 60.001 s ahead of this server's clock "
        "(2024-06-12T12:00:00.000Z), beyond the tolerance of 60 s "
        "(FUTURE_TIMESTAMP_TOLERANCE_SECONDS)"
    )


def test_a_record_carries_the_incarnation_of_its_topic_when_known() -> None:
    record = FakeRecord(encode(manual_record("a")), timestamp=NOW_MS)

    [work], _ = prepare([record], Intake(NOW, incarnations={record.topic: "topic-id"}))

    assert work.item["source"]["incarnation"] == "topic-id"


# --- dead_letter_headers ----------------------------------------------------------------------


def test_dead_letter_headers_keep_the_originals_first_then_say_why_and_from_where() -> None:
    record = FakeRecord(
        b"{not json",
        topic="cadastro-produtos",
        partition=5,
        offset=123456,
        timestamp=EXAMPLE_TIMESTAMP_MS,
        headers=[("trace-id", b"abc123"), ("origem", b"erp")],
    )
    poison = Poison(record, "decode", "value is not JSON: unexpected character")

    assert dead_letter_headers(poison) == [
        ("trace-id", b"abc123"),
        ("origem", b"erp"),
        ("dlq-reason", b"value is not JSON: unexpected character"),
        ("dlq-stage", b"decode"),
        ("dlq-source-topic", b"cadastro-produtos"),
        ("dlq-source-partition", b"5"),
        ("dlq-source-offset", b"123456"),
        ("dlq-source-timestamp", b"1718193600000"),
    ]


def test_dead_letter_headers_are_all_bytes_and_the_reason_is_utf8() -> None:
    poison = Poison(FakeRecord(b"x"), "validate", 'invalid fields: {"productName":["Inválido ✓"]}')

    headers = dead_letter_headers(poison)

    assert all(isinstance(name, str) and isinstance(value, bytes) for name, value in headers)
    assert (dict(headers)["dlq-reason"] or b"").decode("utf-8") == poison.reason


def test_dead_letter_headers_of_a_record_without_headers_are_only_the_dlq_ones() -> None:
    names = [name for name, _ in dead_letter_headers(Poison(FakeRecord(None), "decode", "empty"))]

    assert names == [
        "dlq-reason",
        "dlq-stage",
        "dlq-source-topic",
        "dlq-source-partition",
        "dlq-source-offset",
        "dlq-source-timestamp",
    ]


# --- traces -------------------------------------------------------------------------------

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_record_keeps_its_own_traceparent_on_the_item_for_the_api() -> None:
    record = FakeRecord(encode(manual_record("1")), headers=[("traceparent", TRACEPARENT.encode())])

    work, _ = prepare([record])

    assert work[0].item["traceparent"] == TRACEPARENT
    assert work[0].trace.trace_id == "0af7651916cd43dd8448eb211c80319c"


def test_records_without_a_traceparent_each_start_a_trace_of_their_own() -> None:
    work, poison = prepare(
        [FakeRecord(encode(manual_record(str(n)))) for n in range(3)] + [FakeRecord(b"{not json")]
    )

    traces = {item.trace.trace_id for item in work} | {p.trace.trace_id for p in poison if p.trace}
    assert len(traces) == 4
    assert all(len(trace) == 32 and int(trace, 16) for trace in traces)


def test_a_dead_letter_keeps_its_own_traceparent_and_gets_one_when_it_had_none() -> None:
    own = FakeRecord(b"{not json", headers=[("traceparent", TRACEPARENT.encode())])
    bare = FakeRecord(b"{not json")

    _, poison = prepare([own, bare])

    own_headers = dead_letter_headers(poison[0])
    assert [value for name, value in own_headers if name == "traceparent"] == [TRACEPARENT.encode()]
    bare_headers = dict(dead_letter_headers(poison[1]))
    assert poison[1].trace is not None
    assert bare_headers["traceparent"] == poison[1].trace.traceparent.encode()


def test_a_records_own_dlq_headers_are_kept_under_another_name() -> None:
    forged = [("dlq-reason", b"forged"), ("dlq-stage", b"api"), ("DLQ-Other", b"x")]
    poison = Poison(FakeRecord(b"x", headers=forged), "decode", "value is not JSON")

    headers = dead_letter_headers(poison)

    names = [name for name, _ in headers]
    assert names.count("dlq-reason") == names.count("dlq-stage") == 1
    assert dict(headers)["dlq-reason"] == b"value is not JSON"
    assert headers[:3] == [
        ("original-dlq-reason", b"forged"),
        ("original-dlq-stage", b"api"),
        ("DLQ-Other", b"x"),
    ]


def test_an_unreadable_record_is_dead_lettered_by_its_place() -> None:
    poison = unreadable("cadastro-produtos", 3, 77, UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x"))

    headers = dict(dead_letter_headers(poison))

    assert (poison.record.key, poison.record.value, poison.record.headers) == (None, None, ())
    assert headers["dlq-stage"] == b"decode"
    assert (headers["dlq-reason"] or b"").startswith(b"the Kafka client cannot read this record: ")
    assert (headers["dlq-source-partition"], headers["dlq-source-offset"]) == (b"3", b"77")
