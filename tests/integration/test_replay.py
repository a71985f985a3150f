"""Replay takes only what it can apply: partitions this instance holds, offsets within them,
instants from 1970 on. Anything else is 422 and moves nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from services.common.config import KafkaConfig

from ..helpers import auth, encode, eventually, manual_record, produce, unique

Client = TestClient[web.Request, web.Application]


async def committed(scheduler: Client) -> dict[int, Any]:
    status = await (await scheduler.get("/status", headers=auth())).json()
    return {p["partition"]: (p["committed"], p["lag"]) for p in status["partitions"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"offsets": {"99": 0}}, "99"),
        ({"offsets": {}}, "offsets"),
        ({"offsets": {"0": 2**63 - 1}}, "0"),
        ({"offsets": {"0": 2**63}}, "0"),
        ({"offsets": {"0": 4}}, "0"),  # past the partition's end (3 records on it)
        ({"offsets": {"0": -1}}, "0"),
        ({"offsets": {"-1": 0}}, "-1"),
        ({"offsets": {"2147483648": 0}}, "2147483648"),
        ({"timestamp": "1969-12-31T23:59:59Z"}, "timestamp"),
        ({"timestamp": "2024-06-12T12:00:00"}, "timestamp"),  # no zone
    ],
)
async def test_a_replay_it_cannot_apply_is_422_and_moves_nothing(
    body: dict[str, Any],
    field: str,
    api: Client,
    scheduler: Client,
    kafka: KafkaConfig,
) -> None:
    records = [manual_record(unique("r")) for _ in range(3)]
    await produce(kafka.topic_cadastro, [(b"same-key", encode(r)) for r in records])

    async def caught_up() -> dict[int, Any] | None:
        positions = await committed(scheduler)
        return positions if sum(c or 0 for c, _ in positions.values()) == 3 else None

    before = await eventually(caught_up, within=30, what="the 3 records committed")

    response = await scheduler.post("/consumer/replay", json=body, headers=auth())

    assert response.status == 422, await response.text()
    fields = (await response.json())["error"]["fields"]
    assert field in fields or field in fields.get("offsets", {}), fields
    assert await committed(scheduler) == before
    assert all(lag == 0 for _, lag in before.values())


async def test_a_replay_to_the_partitions_end_is_accepted(scheduler: Client) -> None:
    response = await scheduler.post(
        "/consumer/replay", json={"offsets": {"0": 0, "1": 0, "2": 0}}, headers=auth()
    )

    assert response.status == 200
    assert (await response.json())["positions"] == {"0": 0, "1": 0, "2": 0}
