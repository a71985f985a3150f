"""Kafka records checked against the AsyncAPI document: each message's header and payload
schemas, read by jsonschema's draft-7 validator as any consumer's validator would read them."""

from __future__ import annotations

import decimal
import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from jsonschema import Draft7Validator

from services.common import jsoncodec
from services.common.config import KafkaConfig

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


_SURROGATE = re.compile("[\ud800-\udfff]")


def inexpressible_fault(value: bytes | None) -> str | None:
    """The fault of an input record's value that JSON Schema cannot express, or None: what
    docs/topics.md lists (but timestamps, which the value does not hold)."""
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    faults: list[str] = []

    def strings(item: Any) -> Any:
        if isinstance(item, str) and _SURROGATE.search(item):
            faults.append("a lone surrogate (\\ud800 to \\udfff): text that UTF-8 cannot encode")
        elif isinstance(item, list):
            for child in item:
                strings(child)
        return item  # (objects are looked into as they are read, by members)

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [strings(name) for name, _ in pairs]
        if len(set(names)) < len(names):
            faults.append("a duplicate key")
        for _, item in pairs:
            strings(item)
        return dict(pairs)

    def number(spelled: str) -> decimal.Decimal:
        exact, shown = decimal.Decimal(spelled), decimal.Decimal(repr(float(spelled)))
        if exact != shown and _in_cents(shown) and not _in_cents(exact):
            faults.append("a number finer than cents that a float shows in cents")
        return exact

    try:
        strings(json.loads(text, object_pairs_hook=members, parse_float=number))
    except (ValueError, RecursionError):
        return None
    return faults[0] if faults else None


def _in_cents(number: decimal.Decimal) -> bool:
    return number.is_finite() and number == number.quantize(decimal.Decimal("0.01"))


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
            f"header {list(error.absolute_path)}: {error.message}"
            for error in header_schema.iter_errors(header_values(headers))
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


class Tap:
    """Every record the suite's services wrote to the topics registered here, read back at
    the end of the session and checked against its message in the AsyncAPI document."""

    def __init__(self) -> None:
        # topic -> the message its records must be, and its partitions
        self.topics: dict[str, tuple[str, int]] = {}
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def events(self, kafka: KafkaConfig) -> None:
        """The API of ``kafka`` publishes on its produtos-persistidos."""
        self.topics[kafka.topic_persistidos] = ("ProductPersisted", kafka.partitions)

    def dead_letters(self, kafka: KafkaConfig) -> None:
        """The scheduler of ``kafka`` dead-letters on its DLQ."""
        self.topics[kafka.topic_dlq] = ("DeadLetter", kafka.partitions)

    async def check(self, messages: Messages, bootstrap: str, *, within: float = 60) -> None:
        """Read every registered topic to its end (all at once), checking each record."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await consumer.start()
        try:
            existing = await consumer.topics()
            assigned = [
                TopicPartition(topic, partition)
                for topic, (_, partitions) in self.topics.items()
                if topic in existing
                for partition in range(partitions)
            ]
            if not assigned:
                return
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            deadline = time.monotonic() + within
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"reading the tapped topics did not end in {within}s")
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    message = self.topics[tp.topic][0]
                    self.counts[message] += len(records)
                    for record in records:
                        found = messages.problems(message, record.headers, record.value)
                        if found:
                            where = f"{tp.topic}/{tp.partition}/{record.offset}"
                            self.problems.append(f"{where} ({message}): {found}")
        finally:
            await consumer.stop()

    def summary(self) -> str:
        read = ", ".join(f"{count} {name}" for name, count in sorted(self.counts.items()))
        verdict = f"{len(self.problems)} invalid" if self.problems else "all valid"
        return (
            f"AsyncAPI tap: {sum(self.counts.values())} records the services wrote "
            f"({read or 'none'}), {verdict} against docs/asyncapi.yaml"
        )


TAP = Tap()
