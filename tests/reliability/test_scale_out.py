"""Three schedulers and two APIs lose one of each mid-stream, the API a holder of relay slots.

20,000 records update 500 products 40 times each. One scheduler and the API whose outbox
relay holds slots (as pg_locks shows) are killed with SIGKILL while the records flow; the
other scheduler instances take over the partitions, the schedulers send their batches to the
surviving API, and the surviving relay takes the dead one's slots. In the end every product's
row equals its last record, every record was consumed, and each product's events arrive on
produtos-persistidos in order once duplicates are dropped by event-id.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.api.relay_slots import SLOT_LOCKS
from services.common import jsoncodec

from ..helpers import TopicReader
from .conftest import open_scenario
from .harness import Infrastructure, ServiceProcess
from .scenario import Results, Row, Scenario
from .workload import Expected, Stream, build_updates, versions_in_order

PRODUCTS = 500
UPDATES = 40
RECORDS = PRODUCTS * UPDATES
SLOTS = 16  # outbox_relay_config's default


async def relay_slots_by_process(scenario: Scenario) -> dict[int, list[int]]:
    """The relay slots each API process holds, by its process id, from pg_locks."""
    rows = await scenario.query(
        "SELECT a.application_name, l.objid::integer AS slot"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted"
        " AND l.classid::bigint = $1"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        SLOT_LOCKS,
    )
    held: dict[int, list[int]] = {}
    for row in rows:
        process = int(row["application_name"].rsplit(" pid ", 1)[1])
        held.setdefault(process, []).append(row["slot"])
    return {process: sorted(slots) for process, slots in held.items()}


async def unchanged(apis: list[ServiceProcess]) -> float:
    return sum([await api.metric("persisted_records_total", outcome="unchanged") for api in apis])


async def test_three_schedulers_and_two_apis_lose_one_of_each_mid_stream(
    request: pytest.FixtureRequest, infrastructure: Infrastructure, results: Results
) -> None:
    async with open_scenario(
        request, infrastructure, results, bootstrap=infrastructure.bootstrap, partitions=6
    ) as scenario:
        apis, schedulers = scenario.replicas(apis=2, schedulers=3)
        for service in [*apis, *schedulers]:
            service.start()
        for service in [*apis, *schedulers]:
            await service.ready()

        async def relays_share_the_slots() -> dict[int, list[int]] | None:
            held = await relay_slots_by_process(scenario)
            shared = sorted(held) == sorted(a.pid for a in apis) and all(held.values())
            return held if shared else None

        await scenario.eventually(
            relays_share_the_slots, within=30, what="both APIs' relays holding slots"
        )
        workload = build_updates(scenario.kafka.topic_cadastro.split(".")[0], PRODUCTS, UPDATES)
        messages, last = workload.messages, workload.products
        stream = Stream(
            scenario.kafka.bootstrap_servers, scenario.kafka.topic_cadastro, messages, 10
        )
        started = time.monotonic()
        async with stream.running(within=180):

            async def mid_stream() -> bool:
                return stream.acknowledged >= 0.4 * RECORDS

            await scenario.eventually(mid_stream, within=60, what="40 % of the records produced")
            held = await relay_slots_by_process(scenario)
            victim = next(api for api in apis if held.get(api.pid))
            survivor = next(api for api in apis if api is not victim)
            victim_slots = held[victim.pid]
            assert victim_slots, f"API pid {victim.pid} holds no relay slot: {held}"
            victim.kill()
            schedulers[1].kill()
            killed = time.monotonic()

            async def survivor_holds_every_slot() -> bool:
                now = await relay_slots_by_process(scenario)
                return now == {survivor.pid: list(range(SLOTS))}

            await scenario.eventually(
                survivor_holds_every_slot, within=30, what="the surviving relay taking every slot"
            )
            slots_moved = time.monotonic() - killed

        live_schedulers = [s for s in schedulers if s.running]

        partitions_done = await scenario.eventually(
            lambda: _consumed(scenario, live_schedulers),
            within=180,
            what="every record consumed and committed by the surviving schedulers",
        )
        drained = time.monotonic() - started
        assert sum(p["end"] for p in partitions_done) >= RECORDS

        rows = await scenario.query(
            "SELECT id, name, price_amount, stock_quantity FROM products ORDER BY id"
        )
        assert len(rows) == PRODUCTS
        for row in rows:
            got = Expected(row["name"], row["price_amount"], row["stock_quantity"])
            assert got == last[row["id"]], f"{row['id']}: stored {got}, last sent {last[row['id']]}"

        async with TopicReader(
            scenario.kafka.topic_persistidos, 6, bootstrap=scenario.kafka.bootstrap_servers
        ) as reader:
            events = await reader.read_until(
                lambda records: (
                    _last_published(records) == {k: e.quantity for k, e in last.items()}
                ),
                within=120,
                what="every product's last record on produtos-persistidos",
            )
        distinct = _assert_in_order(events)

        async def outbox_empty() -> bool:
            left: int = (await scenario.query("SELECT count(*) FROM outbox"))[0][0]
            return left == 0

        await scenario.eventually(outbox_empty, within=30, what="the outbox emptied")
        scenario.assert_clean_logs()
        results.rows.append(
            Row(
                scenario=scenario.name,
                sent=len(messages),
                poison=0,
                persisted=len(rows),
                published=distinct,
                duplicates_in_products=0,
                duplicates_published=len(events) - distinct,
                redelivered=round(await unchanged([survivor])),
                dead_lettered=0,
                seconds=time.monotonic() - scenario.started,
            )
        )
        results.notes.append(
            f"scale out: 3 schedulers and 2 APIs, {RECORDS:,} records over {PRODUCTS} products; "
            f"killed (-9) scheduler 2 and the API holding slots {victim_slots} at 40 % of the "
            f"stream; the surviving relay held all {SLOTS} slots {slots_moved:.1f} s later; "
            f"every record consumed {drained:.1f} s after the stream began; "
            f"{distinct:,} distinct events (each product's updates in order), "
            f"{len(events) - distinct} duplicates."
        )


async def _consumed(scenario: Scenario, schedulers: list[ServiceProcess]) -> list[Any] | None:
    parts: list[Any] = []
    for scheduler in schedulers:
        status, body = await scenario.get_json(scheduler, "/status")
        assert status == 200, body
        parts += body["partitions"]
    done = sorted(p["partition"] for p in parts) == list(range(6)) and all(
        p["committed"] == p["end"] for p in parts
    )
    return parts if done else None


def _last_published(records: list[Any]) -> dict[str, int]:
    """Each product's latest quantity on the topic (the records of a key are in order)."""
    latest: dict[str, int] = {}
    for record in records:
        latest[record.key.decode()] = jsoncodec.loads(record.value)["availability"]["quantity"]
    return latest


def _assert_in_order(records: list[Any]) -> int:
    """Once duplicates are dropped by event-id, each product's versions only grow, to the
    last; returns the number of distinct events."""
    per_product = versions_in_order(records)
    for key, sequence in per_product.items():
        assert sequence[-1] == UPDATES, f"{key!r}: last event {sequence[-1]}"
    return sum(len(sequence) for sequence in per_product.values())
