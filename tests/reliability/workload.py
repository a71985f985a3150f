"""What the reliability scenarios send: valid products with poison interleaved, produced
at a steady rate in the background so that a fault lands mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ..helpers import encode, events_by_product, manual_record

log = logging.getLogger(__name__)

# Each kind of poison, and the stage of the scheduler that must reject it.
POISON_STAGES = {
    "random-bytes": "decode",
    "invalid-json": "decode",
    "empty-body": "decode",
    "wrong-types": "validate",
    "missing-fields": "validate",
    "negative-price": "validate",
    "one-megabyte": "validate",
}
ONE_MB = 1_000_000  # fits Kafka's default 1 MiB message limit with the record's overhead


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    kind: str  # "valid" or a kind of poison


@dataclass(frozen=True)
class Expected:
    """What must be stored and published for one product id."""

    name: str
    price: Decimal
    quantity: int


@dataclass
class Workload:
    messages: list[Message]
    products: dict[str, Expected]  # by product id: what must be stored in the end
    poison: list[Message]
    # Each product's versions in the order sent, when it is sent more than once: every
    # event published must be one of them (the last is ``products``').
    versions: dict[str, list[Expected]] = field(default_factory=dict)


def poison_value(kind: str, rng: random.Random, key: str) -> bytes:
    if kind == "random-bytes":
        return b"\xff\xfe" + rng.randbytes(62)  # never UTF-8, so never JSON
    if kind == "invalid-json":
        return b'{"productId": "' + key.encode() + b'", "price": 10.0,'
    if kind == "empty-body":
        return b""
    if kind == "wrong-types":
        return encode(manual_record(key, price="dez reais", stockQuantity="50", productName=7))
    if kind == "missing-fields":
        record = manual_record(key)
        del record["productName"], record["currency"]
        return encode(record)
    if kind == "negative-price":
        return encode(manual_record(key, price=-1.5))
    if kind == "one-megabyte":
        record = manual_record(key, productDescription="")
        record["productDescription"] = "x" * (ONE_MB - len(encode(record)))
        value = encode(record)
        assert len(value) == ONE_MB
        return value
    raise ValueError(kind)


def build_workload(
    prefix: str, count: int = 2000, poison_per_kind: int = 1, megabytes: int = 1, seed: int = 7
) -> Workload:
    """``count`` valid products and poison of every kind, interleaved at random places."""
    rng = random.Random(seed)
    products: dict[str, Expected] = {}
    messages: list[Message] = []
    for n in range(count):
        product_id = f"{prefix}-{n:05d}"
        record = manual_record(
            product_id,
            productName=f"Produto nº {n} — ação",
            price=float(Decimal(n) / 100 + 1),
            stockQuantity=n,
        )
        products[product_id] = Expected(
            record["productName"], Decimal(n) / 100 + 1, record["stockQuantity"]
        )
        messages.append(Message(product_id.encode(), encode(record), "valid"))
    poison: list[Message] = []
    for kind in POISON_STAGES:
        for n in range(megabytes if kind == "one-megabyte" else poison_per_kind):
            key = f"{prefix}-poison-{kind}-{n}"
            poison.append(Message(key.encode(), poison_value(kind, rng, key), kind))
    for item in poison:
        # Not in the first tenth: the services are warmed up before the poison arrives.
        messages.insert(rng.randrange(count // 10, len(messages) + 1), item)
    return Workload(messages, products, poison)


def versions_in_order(records: list[Any]) -> dict[bytes, list[int]]:
    """Each product's versions on produtos-persistidos (events of build_updates' records),
    in the order read once duplicates are dropped by event-id; fails unless they only go up."""
    per_product = {
        key: [quantity for _, quantity in events]
        for key, events in events_by_product(records).items()
    }
    for key, sequence in per_product.items():
        assert sequence == sorted(set(sequence)), f"{key!r} out of order: {sequence}"
    return per_product


def build_updates(prefix: str, count: int, versions: int) -> Workload:
    """``count`` products, each sent ``versions`` times, round after round (every product's
    version 1, then every product's version 2, ...), so that each one is updated all along
    the stream. Version v of a product has stock quantity v: an event's version is its
    quantity."""
    messages: list[Message] = []
    history: dict[str, list[Expected]] = {}
    for version in range(1, versions + 1):
        for n in range(count):
            product_id = f"{prefix}-{n:05d}"
            price = Decimal(n) / 100 + version
            record = manual_record(
                product_id,
                productName=f"Produto nº {n} versão {version}",
                price=float(price),
                stockQuantity=version,
            )
            history.setdefault(product_id, []).append(
                Expected(record["productName"], price, version)
            )
            messages.append(Message(product_id.encode(), encode(record), "valid"))
    products = {product_id: sent[-1] for product_id, sent in history.items()}
    return Workload(messages, products, [], history)


@dataclass
class Placement:
    partition: int
    offset: int
    timestamp: int


@dataclass
class Stream:
    """Produces messages at a steady rate until every one is acknowledged by the broker.

    Each message carries a timestamp fixed at its first attempt, so that a message sent
    again after a broker outage is the same record to the pipeline (same content, same
    availability timestamp): at most a redelivery, never an update.
    """

    bootstrap: str
    topic: str
    messages: list[Message]
    seconds: float
    placements: dict[bytes, list[Placement]] = field(default_factory=dict)
    acknowledged: int = 0
    retried: int = 0

    async def run(self) -> None:
        # Not idempotent: aiokafka keeps the sequence numbers of batches that expired while
        # the broker was down, which the broker then refuses for good (OutOfOrderSequence).
        # A duplicate on the entry topic is harmless here (see the class's docstring).
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=5000,
            max_request_size=2 * 1024 * 1024,
        )
        await producer.start()
        try:
            # Bursts of 100 (four a second at 2,000 in 5 s): the scheduler then fetches
            # batches of about that size, so a fault strikes a sizeable batch in flight.
            chunk = 100
            tick = self.seconds * chunk / len(self.messages)
            started = time.monotonic()
            for number, first in enumerate(range(0, len(self.messages), chunk)):
                await asyncio.sleep(max(0.0, started + number * tick - time.monotonic()))
                await self._deliver(producer, self.messages[first : first + chunk])
        finally:
            await producer.stop()

    async def _deliver(self, producer: AIOKafkaProducer, messages: list[Message]) -> None:
        timestamp = int(time.time() * 1000)
        pending = list(messages)
        while pending:
            results: list[Any] = []
            for message in pending:
                try:
                    results.append(
                        await producer.send(
                            self.topic, message.value, key=message.key, timestamp_ms=timestamp
                        )
                    )
                except KafkaError as exc:
                    results.append(exc)
            outcomes = await asyncio.gather(
                *(r for r in results if not isinstance(r, BaseException)), return_exceptions=True
            )
            acks = iter(outcomes)
            failed: list[Message] = []
            for message, result in zip(pending, results, strict=True):
                outcome = result if isinstance(result, BaseException) else next(acks)
                if isinstance(outcome, BaseException):
                    failed.append(message)
                    continue
                self.placements.setdefault(message.key, []).append(
                    Placement(outcome.partition, outcome.offset, timestamp)
                )
                self.acknowledged += 1
            if failed:
                # The broker is down: keep trying, as any producer of the entry topic would.
                self.retried += len(failed)
                log.info("stream: %d messages not acknowledged; sending again", len(failed))
                await asyncio.sleep(0.5)
            pending = failed

    @contextlib.asynccontextmanager
    async def running(self, within: float = 120) -> AsyncIterator[Stream]:
        """Produce in the background; on exit, wait until everything was acknowledged."""
        task = asyncio.create_task(self.run(), name="stream")
        try:
            yield self
            try:
                async with asyncio.timeout(within):
                    await asyncio.shield(task)
            except TimeoutError:
                raise AssertionError(
                    f"the stream did not finish within {within:.0f}s "
                    f"({self.acknowledged} of {len(self.messages)} messages acknowledged)"
                ) from None
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
