"""Many dead letters re-driven at once: a dry run first, by positions or by filter, at a
rate; beyond the synchronous limit, a job to follow and cancel."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.api.config import ApiConfig
from services.common.config import KafkaConfig
from services.scheduler import dead_letter_handlers

from ..helpers import (
    TopicReader,
    auth,
    encode,
    eventually,
    execute,
    manual_record,
    produce,
    product_count,
    unique,
)

Client = TestClient[web.Request, web.Application]


async def dead_letters(scheduler: Client, count: int) -> list[Any]:
    """The listed entries, once all ``count`` are indexed."""

    async def indexed() -> list[Any] | None:
        response = await scheduler.get("/dead-letters", headers=auth())
        items: list[Any] = (await response.json())["items"] if response.status == 200 else []
        return items if len(items) == count else None

    return await eventually(indexed, within=30, what=f"{count} dead letters listed")


async def test_a_dry_run_gives_each_verdict_and_produces_nothing(
    api: Client, scheduler: Client, kafka: KafkaConfig
) -> None:
    await produce(
        kafka.topic_cadastro,
        [(b"a", b"not json"), (b"b", encode(manual_record("b", currency="reais")))],
    )
    entries = await dead_letters(scheduler, 2)
    positions = [e["positions"][0] for e in entries]

    response = await scheduler.post(
        "/dead-letters/redrive",
        json={
            "positions": [{"partition": p["partition"], "offset": p["offset"]} for p in positions]
            + [{"partition": 0, "offset": 999}],
            "dry_run": True,
        },
        headers=auth(),
    )

    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["total"] == 2 and answer["missing"] == [{"partition": 0, "offset": 999}]
    assert [v["scheduler"]["valid"] for v in answer["verdicts"]] == [False, False]
    assert "currency" in answer["verdicts"][0]["scheduler"]["reason"]
    async with TopicReader(kafka.topic_cadastro) as source:
        await source.read(2)
        await source.nothing_more(within=0.5)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"positions": [{"partition": 0, "offset": 0}], "filter": {}},
        {"filter": {}, "rate": 5001},
        {"filter": {"stage": "elsewhere"}},
        {"filter": {}, "dry_run": "yes"},
    ],
)
async def test_a_bulk_request_it_cannot_take_is_422(
    body: dict[str, Any], scheduler: Client
) -> None:
    response = await scheduler.post("/dead-letters/redrive", json=body, headers=auth())

    assert response.status == 422, await response.text()


async def test_entries_matching_a_filter_are_redriven_once_and_a_job_can_be_followed(
    api: Client,
    scheduler: Client,
    kafka: KafkaConfig,
    api_config: ApiConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    products = [unique("p") for _ in range(4)]
    await execute(
        api_config.database_url,
        "ALTER TABLE products ADD CONSTRAINT few CHECK (stock_quantity < 1000)",
    )
    await produce(
        kafka.topic_cadastro,
        [(p.encode(), encode(manual_record(p, stockQuantity=5000))) for p in products],
    )
    entries = await dead_letters(scheduler, 4)
    assert {e["stage"] for e in entries} == {"api"}
    await execute(api_config.database_url, "ALTER TABLE products DROP CONSTRAINT few")

    dry = await scheduler.post(
        "/dead-letters/redrive", json={"filter": {"stage": "api"}, "dry_run": True}, headers=auth()
    )
    verdicts = (await dry.json())["verdicts"]
    assert [(v["scheduler"]["valid"], v["api"]["valid"]) for v in verdicts] == [(True, True)] * 4
    two = [e["positions"][0] for e in entries[:2]]
    now = await scheduler.post(
        "/dead-letters/redrive",
        json={"positions": [{"partition": p["partition"], "offset": p["offset"]} for p in two]},
        headers=auth(),
    )
    assert now.status == 200, await now.text()
    assert (await now.json())["outcomes"] == {"produced": 2}

    # Beyond the synchronous limit, a job; the two re-driven already are not sent again.
    monkeypatch.setattr(dead_letter_handlers, "SYNCHRONOUS_MAX", 2)
    started = await scheduler.post(
        "/dead-letters/redrive", json={"filter": {"stage": "api"}, "rate": 50}, headers=auth()
    )
    assert started.status == 202, await started.text()
    job = await started.json()
    assert job["total"] == 4

    async def finished() -> dict[str, Any] | None:
        answer = await scheduler.get(f"/dead-letters/jobs/{job['id']}", headers=auth())
        body: dict[str, Any] = await answer.json()
        return body if body["state"] == "done" else None

    done = await eventually(finished, within=10, what="the job done")
    assert done["outcomes"] == {"produced": 2, "already": 2}
    cancelled = await scheduler.delete(f"/dead-letters/jobs/{job['id']}", headers=auth())
    assert cancelled.status == 200
    missing = await scheduler.get(f"/dead-letters/jobs/{'0' * 32}", headers=auth())
    assert missing.status == 404

    async def all_persisted() -> bool:
        return await product_count(api_config.database_url) == len(products)

    await eventually(all_persisted, within=30, what="the 4 re-driven records persisted")
    async with TopicReader(kafka.topic_cadastro) as source:
        records = await source.read(8)
        await source.nothing_more(within=0.5)
    assert (
        sorted(dict(r.headers).get("redrive-attempt", b"-") for r in records)
        == [b"-"] * 4 + [b"1"] * 4
    )
