"""A consumer of produtos-persistidos, as a team downstream of fluxo-dados would write it.

It reads the AsyncAPI document the scheduler serves, takes from it the topic and the schemas
of the event's headers and value, and then, for each event:

- drops it when its ``event-id`` was seen already (delivery is at least once, and an event
  published again keeps its id);
- checks it against the document, and skips (reporting on stderr) one that does not match;
- prints the ones it keeps, one JSON line each, and commits its offsets after.

    python examples/consumer.py --asyncapi http://localhost:8010/asyncapi.json

It needs aiohttp, aiokafka and jsonschema, and nothing of fluxo-dados' code: only its
published document. A real consumer keeps the ids it has seen with what it writes (in the
same transaction); this one keeps the latest ``--remember`` of them in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import decimal
import json
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import aiohttp
from aiokafka import AIOKafkaConsumer
from jsonschema import Draft7Validator

CHANNEL = "produtosPersistidos"


async def fetch_document(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        # Exact numbers, so that "multipleOf: 0.01" is checked as written.
        document: dict[str, Any] = json.loads(await response.text(), parse_float=decimal.Decimal)
        return document


class EventChecker:
    """The schemas of the channel's message, from the document."""

    def __init__(self, document: Mapping[str, Any], channel: str = CHANNEL) -> None:
        self.topic: str = document["channels"][channel]["address"]
        (message,) = document["channels"][channel]["messages"].values()
        message = resolve(document, message)
        self.content_type: str = message["headers"]["properties"]["content-type"]["const"]
        self._headers = Draft7Validator(resolve(document, message["headers"]))
        self._payload = Draft7Validator(resolve(document, message["payload"]))

    def problems(self, headers: Mapping[str, str], value: bytes | None) -> list[str]:
        found = [f"header: {error.message}" for error in self._headers.iter_errors(headers)]
        try:
            event = json.loads(value or b"", parse_float=decimal.Decimal)
        except ValueError as error:
            return [*found, f"value is not JSON: {error}"]
        found += [
            f"{'/'.join(map(str, error.absolute_path)) or 'value'}: {error.message}"
            for error in self._payload.iter_errors(event)
        ]
        return found


def resolve(document: Mapping[str, Any], node: Mapping[str, Any]) -> Any:
    """A local ``$ref`` ("#/components/...") followed to what it names."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


class Seen:
    """The latest ``size`` event ids, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Whether ``event_id`` is new (and remember it)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


def header_map(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers}


async def consume(
    asyncapi_url: str,
    bootstrap_servers: str,
    group: str,
    *,
    stop_after: int | None = None,
    remember: int = 100_000,
    out: TextIO = sys.stdout,
) -> int:
    """Print each new, valid event; returns how many were kept."""
    checker = EventChecker(await fetch_document(asyncapi_url))
    seen = Seen(remember)
    kept = 0
    consumer = AIOKafkaConsumer(
        checker.topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while stop_after is None or kept < stop_after:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    headers = header_map(record.headers)
                    where = f"{record.topic}/{record.partition}/{record.offset}"
                    if not seen.add(headers.get("event-id", where)):
                        print(f"{where}: duplicate of event {headers['event-id']}", file=sys.stderr)
                        continue
                    if problems := checker.problems(headers, record.value):
                        print(f"{where}: skipped, not as documented: {problems}", file=sys.stderr)
                        continue
                    product = json.loads(record.value or b"")
                    print(
                        json.dumps({"event-id": headers["event-id"], "product": product}), file=out
                    )
                    kept += 1
            await consumer.commit()
    finally:
        await consumer.stop()
    return kept


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--asyncapi",
        default="http://localhost:8010/asyncapi.json",
        help="the scheduler's AsyncAPI document (default: %(default)s)",
    )
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--group", default="example-consumer", help="consumer group")
    parser.add_argument("--stop-after", type=int, help="stop once this many events were kept")
    parser.add_argument("--remember", type=int, default=100_000, help="event ids remembered")
    arguments = parser.parse_args(argv)
    kept = asyncio.run(
        consume(
            arguments.asyncapi,
            arguments.bootstrap_servers,
            arguments.group,
            stop_after=arguments.stop_after,
            remember=arguments.remember,
        )
    )
    print(f"kept {kept} events", file=sys.stderr)


if __name__ == "__main__":
    main()
