"""The AsyncAPI document's pure parts: OpenAPI Schema Objects as JSON Schema draft 7, and the
comparison of an event schema with its frozen baseline."""

from __future__ import annotations

import copy
import json
from typing import Any

from services.scheduler.asyncapi import (
    breaking_changes,
    committed_config,
    document,
    json_schema,
    payload_schemas,
)

from ..asyncapi_records import Messages, inexpressible_fault
from ..helpers import DLQ_HEADERS, manual_record

BASELINE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "pricing"],
    "properties": {
        "id": {"type": "string"},
        "note": {"type": "string"},
        "pricing": {
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
        },
    },
}


def changed(change: Any) -> list[str]:
    current = copy.deepcopy(BASELINE)
    change(current)
    return breaking_changes(BASELINE, current)


def test_an_unchanged_schema_breaks_nothing() -> None:
    assert breaking_changes(BASELINE, copy.deepcopy(BASELINE)) == []


def test_an_added_optional_field_breaks_nothing() -> None:
    assert changed(lambda s: s["properties"].update(color={"type": "string"})) == []
    assert (
        changed(lambda s: s["properties"]["pricing"]["properties"].update(tax={"type": "number"}))
        == []
    )


def test_a_removed_or_renamed_field_breaks_consumers() -> None:
    assert changed(lambda s: s["properties"].pop("note")) == ["note removed (or renamed)"]

    def rename(schema: dict[str, Any]) -> None:
        schema["properties"]["pricing"]["properties"]["value"] = schema["properties"]["pricing"][
            "properties"
        ].pop("amount")
        schema["properties"]["pricing"]["required"] = ["value"]

    assert changed(rename) == ["pricing.amount removed (or renamed)"]


def test_a_retyped_field_breaks_consumers() -> None:
    def retype(schema: dict[str, Any]) -> None:
        schema["properties"]["pricing"]["properties"]["amount"]["type"] = "string"

    assert changed(retype) == ["pricing.amount retyped from ['number'] to ['string']"]


def test_a_newly_nullable_field_breaks_consumers() -> None:
    def nullable(schema: dict[str, Any]) -> None:
        schema["properties"]["id"]["type"] = ["string", "null"]

    assert changed(nullable) == ["id may now be null"]


def test_a_field_no_longer_required_breaks_consumers() -> None:
    assert changed(lambda s: s["required"].remove("pricing")) == [
        "pricing no longer always present"
    ]


def test_openapi_schema_objects_become_json_schema_draft_7() -> None:
    definitions = {
        "Inner": {
            "type": "object",
            "properties": {
                "size": {"type": "integer", "nullable": True, "example": 3},
                "kind": {"type": "string", "enum": ["a", "b"], "nullable": True},
            },
        },
        "Outer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "example": "x", "deprecated": True},
                "inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}], "nullable": True},
                "tags": {"type": "array", "items": {"type": "string", "nullable": True}},
            },
        },
    }
    converted = json_schema(definitions["Outer"], definitions)
    inner = {
        "type": "object",
        "properties": {
            "size": {"type": ["integer", "null"], "examples": [3]},
            "kind": {"type": ["string", "null"], "enum": ["a", "b", None]},
        },
    }
    assert converted == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "examples": ["x"]},
            "inner": {"anyOf": [{"allOf": [inner]}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": ["string", "null"]}},
        },
    }


def test_the_payload_schemas_have_no_openapi_keyword_or_reference_left() -> None:
    text = repr(payload_schemas())
    for keyword in ("'nullable'", "'example'", "'$ref'"):
        assert keyword not in text


def test_faults_json_schema_cannot_express_are_named() -> None:
    assert inexpressible_fault(b'{"productName": "\\ud800"}') == (
        "a lone surrogate (\\ud800 to \\udfff): text that UTF-8 cannot encode"
    )
    assert inexpressible_fault(b'{"a": ["x", "\\udfff"]}') is not None
    assert inexpressible_fault(b"\xff{}") == "not UTF-8"
    assert inexpressible_fault(b'{"price": 1, "price": 2}') == "a duplicate key"
    assert inexpressible_fault(b'{"price": 100.0000000000000001}') == (
        "a number finer than cents that a float shows in cents"
    )
    for plain in (b'{"price": 100.5}', b'{"price": 100.001}', b'["\\ud83d\\ude00"]', b"[[", None):
        assert inexpressible_fault(plain) is None


def test_records_are_read_as_their_message_says() -> None:
    messages = Messages(document(committed_config()))
    record = {**manual_record("p-1"), "price": 0.29}  # 0.29 / 0.01 is no integer in floats
    assert messages.problems("ManualProduct", [("x", None)], json.dumps(record).encode()) == []
    assert messages.problems("ManualProduct", [], b"NaN") == ["value: NaN is not JSON"]
    assert messages.problems("ManualProduct", [], b'{"price": 1e400}') != []  # no exception
    dead = [(name, b"decode" if name == "dlq-stage" else b"1") for name in DLQ_HEADERS]
    assert messages.problems("DeadLetter", [*dead, ("original-dlq-reason", None)], b"\xff") == []
    assert messages.problems("DeadLetter", dead[1:], b"") == [
        "header []: 'dlq-reason' is a required property"
    ]
