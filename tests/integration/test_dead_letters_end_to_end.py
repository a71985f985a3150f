"""Dead letters end to end, scaled to run in well under two minutes: 2,000 records, 300 of them
poison of three kinds, two schedulers as real processes (one killed with SIGKILL while the
records flow), every fixable one corrected through the endpoint and sent to both schedulers at
once, the others re-driven as they are once PostgreSQL's CHECK constraint is dropped.

Then every record is accounted for exactly once, with exactly one ``redrive-of`` record per
entry and attempt, and no product's row went back to an older version.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.api.config import ApiConfig
from services.common.config import KafkaConfig

from ..helpers import (
    TOKEN,
    TopicReader,
    auth,
    encode,
    eventually,
    execute,
    free_ports,
    manual_record,
    persisted,
    produce,
    product_count,
    topic_settings,
    unique,
)
from ..reliability.harness import SETTINGS, ServiceProcess

Client = TestClient[web.Request, web.Application]

VALID, FIX_PRICE, FIX_JSON, REFUSED, NEWER = 1700, 100, 100, 100, 50
# Corrected, but still refused by PostgreSQL: dead-lettered again, then re-driven again.
REFUSED_AGAIN = 20
LIMIT = "CHECK (stock_quantity < 100000)"


@pytest.fixture
async def schedulers(
    tmp_path: Path, kafka: KafkaConfig, api: Client
) -> AsyncIterator[list[ServiceProcess]]:
    server: TestServer = api.server  # type: ignore[assignment]
    env = {
        **os.environ,
        **SETTINGS,
        "API_TOKEN": TOKEN,
        "API_URL": str(server.make_url("")).rstrip("/"),
        **topic_settings(kafka),
        "KAFKA_CONSUMER_GROUP": unique("group"),
        "RETRY_MAX_DELAY": "0.5",
        "LOG_FORMAT": "text",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }
    async with aiohttp.ClientSession() as http:
        started = []
        for label in ("scheduler-a", "scheduler-b"):
            port = free_ports()
            service = ServiceProcess(
                "scheduler", port, {**env, "SCHEDULER_PORT": str(port)}, tmp_path, http, label=label
            )
            started.append(service)
        try:
            for service in started:
                service.start()
            for service in started:
                await service.ready()
            yield started
        finally:
            for service in started:
                service.discard()


async def post(service: ServiceProcess, path: str, body: Any = None) -> tuple[int, Any]:
    """The status and answer of a POST, or (0, error) when nothing answers (killed)."""
    try:
        async with service.http.post(service.url + path, json=body, headers=auth()) as response:
            return response.status, await response.json()
    except aiohttp.ClientError as error:
        return 0, str(error)


async def entries(service: ServiceProcess, count: int, **query: str) -> list[Any]:
    """Every listed entry (paged), once ``count`` are listed."""

    async def listed() -> list[Any] | None:
        found: list[Any] = []
        cursor: str | None = None
        while True:
            params = {**query, "limit": "500", **({"cursor": cursor} if cursor else {})}
            async with service.http.get(
                service.url + "/dead-letters", params=params, headers=auth()
            ) as response:
                if response.status != 200:
                    return None
                page = await response.json()
            found += page["items"]
            cursor = page["next"]
            if cursor is None:
                return found if len(found) == count else None

    return await eventually(listed, within=60, what=f"{count} dead letters listed", every=0.3)


async def test_every_dead_letter_is_found_fixed_and_redriven_exactly_once(
    api: Client, schedulers: list[ServiceProcess], kafka: KafkaConfig, api_config: ApiConfig
) -> None:
    database = api_config.database_url
    a, b = schedulers
    run = unique("e2e")
    await execute(database, f"ALTER TABLE products ADD CONSTRAINT e2e_limit {LIMIT}")
    valid = [manual_record(f"{run}-v{n}", stockQuantity=n) for n in range(VALID)]
    fix_price = [manual_record(f"{run}-price{n}", price=-1) for n in range(FIX_PRICE)]
    fix_json = [f"{run}-json{n}" for n in range(FIX_JSON)]
    refused = [manual_record(f"{run}-big{n}", stockQuantity=500_000) for n in range(REFUSED)]
    records = [(r["productId"].encode(), encode(r)) for r in valid + fix_price + refused]
    records += [(p.encode(), b'{"productId": "' + p.encode() + b'", "price": ') for p in fix_json]

    await produce(kafka.topic_cadastro, records)
    b.kill()  # SIGKILL while the records flow: its partitions go to a, uncommitted ones again
    dead = await entries(a, FIX_PRICE + FIX_JSON + REFUSED)
    b.start()
    await b.ready()
    # A newer record of some refused products, later in the same partition: their re-drive
    # is older than the row and must leave it as it is.
    newer = {
        r["productId"]: manual_record(r["productId"], stockQuantity=7) for r in refused[:NEWER]
    }
    await produce(kafka.topic_cadastro, [(p.encode(), encode(r)) for p, r in newer.items()])
    assert Counter(e["stage"] for e in dead) == {"validate": 100, "decode": 100, "api": 100}

    # Corrections, each sent to both schedulers at once: one re-drives it, the other answers
    # 409. The first few, corrected to a quantity PostgreSQL still refuses, come back.
    def corrected(entry: dict[str, Any], n: int) -> dict[str, Any]:
        product = entry["key"]
        quantity = 500_000 if n < REFUSED_AGAIN else 3
        return manual_record(product, price=1, stockQuantity=quantity)

    fixable = [e for e in dead if e["stage"] != "api"]

    async def fix(entry: dict[str, Any], n: int) -> list[int]:
        position = entry["positions"][0]
        path = f"/dead-letters/{position['partition']}/{position['offset']}/redrive"
        body = {"value": corrected(entry, n)}
        answers = await asyncio.gather(post(a, path, body), post(b, path, body))
        return sorted(status for status, _ in answers)

    statuses = await asyncio.gather(*(fix(entry, n) for n, entry in enumerate(fixable)))
    assert statuses == [[200, 409]] * len(fixable)

    for service in schedulers:  # both know of the records that came back
        refused_again = await entries(service, REFUSED + REFUSED_AGAIN, stage="api")
        attempts = Counter(e["attempt"] for e in refused_again)
        assert attempts == {0: REFUSED, 1: REFUSED_AGAIN}

    # The cause is gone: every refused entry re-driven as it is, the same request to both,
    # after a dry run that warns of the re-drives older than their product's row.
    await execute(database, "ALTER TABLE products DROP CONSTRAINT e2e_limit")

    async def newer_persisted() -> bool:
        return all(await asyncio.gather(*(persisted(database, p) for p in newer)))

    await eventually(newer_persisted, within=30, what="the newer records persisted")
    status, dry = await post(
        a, "/dead-letters/redrive", {"filter": {"stage": "api"}, "dry_run": True}
    )
    assert status == 200, dry
    assert {v["entry"] for v in dry["verdicts"] if v.get("stale")} == {
        e["entry"] for e in dead if e["key"] in newer
    }
    body = {"filter": {"stage": "api"}, "rate": 5000}
    answers = await asyncio.gather(
        post(a, "/dead-letters/redrive", body), post(b, "/dead-letters/redrive", body)
    )
    outcomes: Counter[str] = Counter()
    for status, answer in answers:
        assert status == 200, answer
        outcomes.update(answer["outcomes"])
    assert outcomes == {"produced": REFUSED + REFUSED_AGAIN, "already": REFUSED + REFUSED_AGAIN}

    # Every record accounted for: the valid ones, the corrected ones, the re-driven ones.
    expected = VALID + FIX_PRICE + FIX_JSON + REFUSED

    async def all_persisted() -> bool:
        return await product_count(database) == expected

    await eventually(all_persisted, within=60, what=f"{expected} products persisted")

    async def caught_up() -> bool:
        lags = []
        for service in schedulers:
            async with service.http.get(service.url + "/status", headers=auth()) as response:
                if response.status != 200:
                    return False
                lags += [p["lag"] for p in (await response.json())["partitions"]]
        return len(lags) == kafka.partitions and not any(lags)

    # The stale re-drives too have been handed to the API, which left them unchanged.
    await eventually(caught_up, within=30, what="both schedulers committed everything")
    stale = [await service.metric("redrives_total", outcome="stale") for service in schedulers]
    assert sum(stale) == NEWER
    conn = await asyncpg.connect(database)
    try:
        rows = {
            row["id"]: row
            for row in await conn.fetch(
                "SELECT id, price_amount, stock_quantity, availability_timestamp,"
                " source_partition, source_offset FROM products WHERE id LIKE $1",
                f"{run}-%",
            )
        }
    finally:
        await conn.close()
    async with TopicReader(kafka.topic_cadastro, kafka.partitions) as source:
        produced = len(records) + NEWER + len(fixable) + REFUSED + REFUSED_AGAIN
        everything = await source.read(produced, within=30)
        await source.nothing_more(within=1)
    originals = {
        (r.partition, r.offset): r for r in everything if "redrive-of" not in dict(r.headers)
    }
    redrives = Counter(
        (dict(r.headers)["redrive-of"], dict(r.headers)["redrive-attempt"])
        for r in everything
        if "redrive-of" in dict(r.headers)
    )
    assert len(redrives) == len(fixable) + REFUSED + REFUSED_AGAIN
    assert set(redrives.values()) == {1}, "one redrive-of record per entry and attempt"

    for entry in dead:
        row = rows[entry["key"]]
        if entry["key"] in newer:
            # The re-drive was older than the row: the newer record stays.
            assert row["stock_quantity"] == 7, entry["key"]
            continue
        # Persisted from its original place and with its original timestamp.
        source = entry["source"]
        original = originals[(source["partition"], source["offset"])]
        assert (row["source_partition"], row["source_offset"]) == (
            source["partition"],
            source["offset"],
        )
        assert int(row["availability_timestamp"].timestamp() * 1000) == original.timestamp
        if entry["stage"] == "api":
            assert row["stock_quantity"] == 500_000
        else:
            assert float(row["price_amount"]) == 1.0
    for record in valid:
        assert rows[record["productId"]]["stock_quantity"] == record["stockQuantity"]
