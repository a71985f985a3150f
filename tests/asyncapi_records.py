"""Kafka records checked against the AsyncAPI document: each message's header and payload
schemas, read by jsonschema's draft-7 validator as any consumer's validator would read them."""

from __future__ import annotations

import decimal
import json
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft7Validator

from services.common import jsoncodec

Headers = Sequence[tuple[str, bytes | None]]


def exact(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as a consumer reads its JSON: numbers with a fraction as ``Decimal``, so
    that ``multipleOf: 0.01`` is judged exactly (as a float, 0.29 is no multiple of 0.01)."""
    data: dict[str, Any] = json.loads(jsoncodec.dumps(document), parse_float=decimal.Decimal)
    return data


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def read_json(value: bytes | None) -> Any:
    """A record's value as JSON with exact numbers; ``ValueError`` when it is not JSON."""
    if value is None:
        raise ValueError("no value")
    try:
        return json.loads(
            value.decode("utf-8"), parse_float=decimal.Decimal, parse_constant=_refuse
        )
    except RecursionError:
        raise ValueError("nested too deep to read") from None


def header_values(headers: Headers) -> dict[str, str | None]:
    """Kafka headers as the JSON object the header schema describes (the last of a name wins)."""
    return {
        name: None if value is None else value.decode("utf-8", "replace") for name, value in headers
    }


class Messages:
    """The header and payload validators of each message of a document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = exact(document)
        components = self.document["components"]
        self._validators: dict[str, tuple[Draft7Validator, Draft7Validator, bool]] = {}
        for name, message in components["messages"].items():
            payload = message["payload"]
            if "$ref" in payload:
                payload = components["schemas"][payload["$ref"].rsplit("/", 1)[-1]]
            self._validators[name] = (
                Draft7Validator(message.get("headers", {})),
                Draft7Validator(payload),
                message.get("contentType", self.document["defaultContentType"]).startswith(
                    "application/json"
                ),
            )

    def problems(self, message: str, headers: Headers, value: bytes | None) -> list[str]:
        """What in a record its message's schemas refuse; empty when it is valid."""
        header_schema, payload_schema, is_json = self._validators[message]
        found = [
            f"header {error.message}" for error in header_schema.iter_errors(header_values(headers))
        ]
        if is_json:
            try:
                payload = read_json(value)
            except ValueError as error:
                return [*found, f"value: {error}"]
            with decimal.localcontext() as context:
                # A huge number against multipleOf 0.01: a failed check, not an exception.
                context.traps[decimal.InvalidOperation] = False
                found += [
                    f"value {list(error.absolute_path)}: {error.message}"
                    for error in payload_schema.iter_errors(payload)
                ]
        return found
