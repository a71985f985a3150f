"""``python -m bench --dead-letters N``: the dead-letter list of the running scheduler
after N more dead letters.

Produces N poison records at full speed to ``cadastro-produtos`` (a third not JSON, two
thirds refused by validation: a negative price, or a price that is no number beside a name
too long), waits until the scheduler's dead-letter index holds the last of each partition,
then asks ``GET /dead-letters`` over HTTP, one request at a time, with each filter: the
latency of a page (p50, p99) and the scheduler's resident memory per dead letter. The dead
letters stay on the DLQ, as any would (``make clean`` removes them with Kafka's data).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from services.common import jsoncodec
from services.common.kafka import create_producer, partition_for
from services.common.transform import format_timestamp

from .pipeline import produce_full_speed
from .procs import status_kib
from .settings import Settings

log = logging.getLogger("bench.dead_letters")

REQUESTS = 100  # per query
CAUGHT_UP_WAIT = 600.0


@dataclass(frozen=True)
class Query:
    name: str
    params: dict[str, str]


def poison(run_id: str, count: int) -> Iterator[tuple[bytes, bytes]]:
    for n in range(count):
        key = f"dlq-{run_id}-{n:07d}"
        if n % 3 == 0:
            value = b"{not json " + key.encode()
        elif n % 3 == 1:
            value = jsoncodec.dumps({"productId": key, "price": -1})
        else:
            value = jsoncodec.dumps({"productId": key, "name": "x" * 300, "price": "free"})
        yield key.encode(), value


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_dead_letters(settings: Settings, count: int, scheduler_pid: int) -> str:
    run_id = datetime.now(UTC).strftime("%H%M%S")
    headers = {"Authorization": f"Bearer {settings.token}"}
    url = settings.scheduler_url + "/dead-letters"
    producer = create_producer(settings.kafka)
    rss_before = status_kib(scheduler_pid, "VmRSS") or 0
    await producer.start()
    try:
        topic = settings.kafka.topic_cadastro
        partitions = sorted(await producer.partitions_for(topic))
        items = list(poison(run_id, count))
        last = {partition_for(key, partitions): key.decode() for key, _ in items}
        started = datetime.now(UTC)
        await produce_full_speed(producer, topic, items)
    finally:
        await producer.stop()
    log.info("produced %d poison records; waiting for the index", count)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def found(key: str) -> bool:
            async with http.get(url, params={"key": key, "limit": "1"}) as response:
                return response.status == 200 and bool((await response.json())["items"])

        begun = time.monotonic()
        waiting = set(last.values())
        while waiting:
            if time.monotonic() - begun > CAUGHT_UP_WAIT:
                raise TimeoutError(f"the index did not list {sorted(waiting)} within 600 s")
            waiting = {key for key in waiting if not await found(key)}
            await asyncio.sleep(0.5)
        indexed = time.monotonic() - begun
        rss_after = status_kib(scheduler_pid, "VmRSS") or 0
        window = {
            "since": format_timestamp(started + timedelta(seconds=1)),
            "until": format_timestamp(started + timedelta(seconds=3)),
        }
        queries = [
            Query("newest 100", {}),
            Query("newest 500", {"limit": "500"}),
            Query("stage=decode", {"stage": "decode"}),
            Query("reason substring", {"reason": "price"}),
            Query("reason matching none (full scan)", {"reason": "absent"}),
            Query("key (one entry)", {"key": f"dlq-{run_id}-{count // 2:07d}"}),
            Query("key absent", {"key": "absent"}),
            Query("since..until", window),
            Query("redriven=false", {"redriven": "false"}),
            Query("redriven=true, none (full scan)", {"redriven": "true"}),
        ]
        rows, every = [], []
        for query in queries:
            latencies = []
            for _ in range(REQUESTS):
                begin = time.perf_counter()
                async with http.get(url, params=query.params) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{query.name}: {response.status}")
                latencies.append((time.perf_counter() - begin) * 1000)
            every += latencies
            rows.append(
                f"| {query.name} | {statistics.median(latencies):.1f} | "
                f"{percentile(latencies, 0.99):.1f} |"
            )
    per_letter = (rss_after - rss_before) * 1024 / count
    return "\n".join(
        [
            f"Dead-letter list after {count:,} more dead letters "
            f"({REQUESTS} requests per query over HTTP, one at a time):",
            "",
            "| query | p50 ms | p99 ms |",
            "| --- | ---: | ---: |",
            *rows,
            f"| all | {statistics.median(every):.1f} | {percentile(every, 0.99):.1f} |",
            "",
            f"Index caught up {indexed:.1f} s after the last record was produced; the "
            f"scheduler's resident memory went from {rss_before / 1024:.0f} to "
            f"{rss_after / 1024:.0f} MiB, {per_letter:,.0f} bytes per dead letter.",
        ]
    )
