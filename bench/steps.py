"""CPU per record of each step a record takes through the services' own code, without I/O.

``python -m bench.steps`` runs the scheduler's and the API's pure steps over the benchmark's
records (``bench/records.py``), batch by batch as the scheduler sends them, and prints the
CPU time (``time.process_time``) each step costs per record, the lowest of a few rounds.
What it leaves out is the I/O: Kafka's client, aiohttp's server and client, asyncpg and the
outbox relay. No service, broker or database is needed, so it runs beside anything else;
run it from another checkout (``PYTHONPATH=<checkout>``) to compare two versions of the code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from services.api import handlers, repository
from services.api.database import Connection
from services.common import jsoncodec
from services.common.tracing import parse
from services.scheduler import records as scheduler_records

from .records import SourceRecord, records, traceparent

TOPIC = "cadastro-produtos"
PARTITIONS = 6


class FakeConnection:
    """What ``upsert_products`` awaits: every row written, and new."""

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return [{"id": product_id, "inserted": True} for product_id in args[0]]


def fetched(count: int, timestamp_ms: int) -> list[SourceRecord]:
    return [
        SourceRecord(
            TOPIC,
            n % PARTITIONS,
            n // PARTITIONS,
            timestamp_ms,
            key,
            value,
            [("traceparent", traceparent(key))],
        )
        for n, (key, value) in enumerate(records("steps", 0, count))
    ]


def validate(items: list[Any]) -> list[Any]:
    """The batch handler's validation of its items, as ``persist_batch`` does it."""
    now = datetime.now(UTC)
    valid = []
    for item in items:
        valid.append(handlers.load_item(item, now=now, tolerance=60))
        parse(item.get("traceparent"))
    return valid


class Clock:
    """CPU seconds spent per step, summed over the batches."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.process_time()
        yield
        self.spent[name] = self.spent.get(name, 0.0) + time.process_time() - started


def run_steps(batches: Sequence[list[SourceRecord]]) -> dict[str, float]:
    """CPU seconds of each step over every batch."""
    clock = Clock()
    intake = scheduler_records.current_intake()
    loop = asyncio.new_event_loop()
    try:
        for batch in batches:
            with clock.step("scheduler: parse record (loads_exact)"):
                for record in batch:
                    jsoncodec.loads_exact(record.value or b"")
            with clock.step("scheduler: parse + check + transform (to_work)"):
                work = [scheduler_records.to_work(record, None, intake) for record in batch]
            with clock.step("scheduler: request body (dumps)"):
                body = jsoncodec.dumps({"items": [w.item for w in work]})
            with clock.step("api: parse body (loads_exact)"):
                items = jsoncodec.loads_exact(body)["items"]
            with clock.step("api: validate items"):
                valid = validate(items)
            with clock.step("api: rows and events (upsert_products, no database)"):
                connection = cast(Connection, FakeConnection())
                upsert = repository.upsert_products(connection, valid, "out", [None] * len(valid))
                loop.run_until_complete(upsert)
            with clock.step("api: response body (dumps)"):
                results = [
                    {"index": i, "id": p["id"], "status": "created"}
                    for i, (p, _) in enumerate(valid)
                ]
                answer = jsoncodec.dumps({"results": results})
            with clock.step("scheduler: parse response (loads)"):
                jsoncodec.loads(answer)
    finally:
        loop.close()
    return clock.spent


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    source = fetched(args.records, int(time.time() * 1000))
    batches = [source[i : i + args.batch_size] for i in range(0, len(source), args.batch_size)]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for step, seconds in run_steps(batches).items():
            best[step] = min(best.get(step, seconds), seconds)
    print("| step | CPU µs per record |")
    print("| --- | ---: |")
    for step, seconds in best.items():
        print(f"| {step} | {seconds / args.records * 1e6:.1f} |")


if __name__ == "__main__":
    main()
