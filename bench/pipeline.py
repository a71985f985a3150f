"""The pipeline as ``make up`` runs it, measured at ``produtos-persistidos``.

A producer feeds ``cadastro-produtos`` (at full speed or paced); a consumer outside any
group reads every partition of ``produtos-persistidos`` from the end offsets taken before
the first record was produced, and keeps, for this run's ids only, the time from each
source record's timestamp (carried as ``availability.timestamp``) to its arrival.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from services.common import jsoncodec
from services.common.kafka import Outgoing, client_settings, create_producer, send_batches

from . import hops, report
from .procs import BenchError, Sampler
from .records import id_prefix, records, traceparent
from .settings import Settings

log = logging.getLogger(__name__)

# At full speed the load generator hands aiokafka this many records at a time, as one
# batch per partition (as the outbox relay publishes): with a future per record, as send()
# gives, it took 27 µs of CPU per record from the two cores it shares with the pipeline;
# this way 19 (its consumer included).
FULL_SPEED_CHUNK = 1000
# The paced producer wakes up at most this often and sends what is due at once: a wake-up
# per record would cost the load generator a third of a core at 1,000 records/s on a
# machine it shares. It does not linger, so that latency counts from when a record leaves
# the load generator, not from a source's own buffering (the services' producer lingers
# 5 ms, Kafka 4's default, which added about 2 ms to p50 at 1,000 records/s).
PACE_TICK = 0.005
# After the last arrival, time for the relay's last observations to be written.
HISTOGRAM_SETTLE = 0.5
# No new arrival of a phase's records for this long, once produced, ends the wait.
STALL_SECONDS = 60.0


@dataclass
class Arrivals:
    """One phase's records as they arrive; a duplicate (at-least-once) counts once."""

    first: int
    end: int
    latency: dict[int, float]  # record number → seconds from source timestamp to arrival
    last_arrival: float = 0.0  # wall clock, as the source timestamps are
    done: asyncio.Event | None = None

    def add(self, number: int, latency: float, now: float) -> None:
        if number in self.latency:
            return
        self.latency[number] = latency
        self.last_arrival = now
        if len(self.latency) == self.end - self.first and self.done is not None:
            self.done.set()


class TopicFollower:
    """Reads every partition of a topic without a group, in a task, handing each record to
    ``_take`` with the time it arrived."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self._task: asyncio.Task[None] | None = None

    async def _follow(self, partitions: Iterable[int], *, from_end: bool) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        if from_end:
            for tp, offset in (await self._consumer.end_offsets(tps)).items():
                self._consumer.seek(tp, offset)
        else:
            await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(), name=f"following {self._topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()  # before parsing: the records arrived by now
            for batch in batches.values():
                for record in batch:
                    self._take(record.key, record.value, now)
            if batches:
                self._fetched()

    def _take(self, key: bytes | None, value: bytes | None, now: float) -> None:
        raise NotImplementedError

    def _fetched(self) -> None:
        """After each fetch that brought records."""


class ArrivalWatcher(TopicFollower):
    """Reads ``produtos-persistidos`` from before the run's first record, without a group."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        consumer = AIOKafkaConsumer(
            **client_settings(settings.kafka),
            group_id=None,
            enable_auto_commit=False,
        )
        super().__init__(consumer, settings.kafka.topic_persistidos)
        self._prefix = id_prefix(run_id).encode()
        self._phases: list[Arrivals] = []

    async def start(self, producer: AIOKafkaProducer) -> None:
        await self._follow(await producer.partitions_for(self._topic), from_end=True)

    def expect(self, first: int, count: int) -> Arrivals:
        arrivals = Arrivals(first, first + count, {}, done=asyncio.Event())
        self._phases.append(arrivals)
        return arrivals

    def _take(self, key: bytes | None, value: bytes | None, now: float) -> None:
        if key is None or not key.startswith(self._prefix) or value is None:
            return  # another client's product
        self._arrived(int(key[len(self._prefix) :]), value, now)

    def _arrived(self, number: int, value: bytes, now: float) -> None:
        for arrivals in self._phases:
            if arrivals.first <= number < arrivals.end:
                stamp = jsoncodec.loads(value)["availability"]["timestamp"]
                arrivals.add(number, now - datetime.fromisoformat(stamp).timestamp(), now)
                return


async def wait_for(arrivals: Arrivals, what: str) -> None:
    """Until every record of the phase arrived, or none arrived for ``STALL_SECONDS``."""
    assert arrivals.done is not None
    expected = arrivals.end - arrivals.first
    while not arrivals.done.is_set():
        before = len(arrivals.latency)
        try:
            await asyncio.wait_for(arrivals.done.wait(), STALL_SECONDS)
        except TimeoutError:
            if len(arrivals.latency) == before:
                log.warning(
                    "%s: %d of %d records arrived; none for %.0f s, giving up",
                    what,
                    before,
                    expected,
                    STALL_SECONDS,
                )
                return


async def produce_full_speed(
    producer: AIOKafkaProducer, topic: str, items: Iterable[tuple[bytes, bytes]]
) -> tuple[float, float]:
    """Send as fast as aiokafka takes them, as one batch per partition for every
    ``FULL_SPEED_CHUNK`` records, each on the partition ``send()`` would choose; (wall time
    of the first send, seconds to the last acknowledgement)."""
    first, started = time.time(), time.monotonic()
    deliveries = []
    records = iter(items)
    while chunk := list(islice(records, FULL_SPEED_CHUNK)):
        outgoing = [Outgoing(topic, value, key, traced(key)) for key, value in chunk]
        deliveries += await send_batches(producer, outgoing)
        await asyncio.sleep(0)  # the sender task, the arrival watcher and the sampler run
    await asyncio.gather(*deliveries)
    return first, time.monotonic() - started


def traced(key: bytes) -> list[tuple[str, bytes]]:
    return [("traceparent", traceparent(key))]


async def produce_paced(
    producer: AIOKafkaProducer,
    topic: str,
    items: Iterator[tuple[bytes, bytes]],
    count: int,
    rate: float,
) -> tuple[float, float, list[RecordMetadata]]:
    """Send ``count`` records at ``rate`` per second: record i is sent once i / rate seconds
    have passed, so a late wake-up catches up instead of lowering the rate. Returns the wall
    time of the first send, the seconds to the last acknowledgement, and each record's
    metadata (its timestamp) in the order sent."""
    first, started = time.time(), time.monotonic()
    deliveries = []
    sent = 0
    while sent < count:
        due = min(count, int((time.monotonic() - started) * rate) + 1)
        for key, value in (next(items) for _ in range(due - sent)):
            deliveries.append(await producer.send(topic, value=value, key=key, headers=traced(key)))
        sent = due
        await asyncio.sleep(max(PACE_TICK, started + sent / rate - time.monotonic()))
    metadata = await asyncio.gather(*deliveries)
    return first, time.monotonic() - started, metadata


class Pipeline:
    """The running services, loaded phase after phase with fresh product ids."""

    def __init__(
        self, settings: Settings, run_id: str, pids: dict[str, int], producer: AIOKafkaProducer
    ) -> None:
        self._settings = settings
        self._run_id = run_id
        self._pids = pids
        self._producer = producer
        self._paced = create_producer(settings.kafka, linger_ms=0)
        self._watcher = ArrivalWatcher(settings, run_id)
        self._next = 0  # the number of the run's next record
        self._service_urls = {"api": settings.api_url, "scheduler": settings.scheduler_url}

    async def start(self) -> None:
        await check_ready(self._settings)
        await self._watcher.start(self._producer)
        await self._paced.start()

    async def stop(self) -> None:
        await self._paced.stop()
        await self._watcher.stop()

    async def phase(self, name: str, count: int, rate: float | None) -> report.Phase:
        """Produce ``count`` new records (paced at ``rate``, or at full speed) and measure."""
        first = self._take(count)
        arrivals = self._watcher.expect(first, count)
        topic = self._settings.kafka.topic_cadastro
        items = records(self._run_id, first, count)
        histograms = await hops.read(self._service_urls)
        async with Sampler(self._pids) as sampler:
            if rate is None:
                sent_at, produce_seconds = await produce_full_speed(self._producer, topic, items)
            else:
                sent_at, produce_seconds, _ = await produce_paced(
                    self._paced, topic, items, count, rate
                )
            await wait_for(arrivals, name)
        phase = _phase(name, rate, count, arrivals, sent_at, produce_seconds, sampler)
        await asyncio.sleep(HISTOGRAM_SETTLE)
        return replace(phase, hops=hops.hops(histograms, await hops.read(self._service_urls)))

    async def backlog(self, count: int) -> report.Phase:
        """Produce ``count`` records while the scheduler is paused, then time the drain."""
        first = self._take(count)
        arrivals = self._watcher.expect(first, count)
        topic = self._settings.kafka.topic_cadastro
        async with Sampler(self._pids) as sampler:
            await operate(self._settings, "pause")
            try:
                _, produce_seconds = await produce_full_speed(
                    self._producer, topic, records(self._run_id, first, count)
                )
                log.info("backlog of %d records produced in %.1f s", count, produce_seconds)
            finally:
                resumed_at = time.time()
                await operate(self._settings, "resume")
            await wait_for(arrivals, "backlog")
        phase = _phase("backlog", None, count, arrivals, resumed_at, produce_seconds, sampler)
        # Latency would mostly measure how long the scheduler was paused: not shown.
        return replace(phase, latency=None)

    async def delete_rows(self) -> int:
        """Remove this run's products, so that runs do not grow the shared table."""
        conn = await asyncpg.connect(self._settings.api.database_url)
        try:
            status: str = await conn.execute(
                "DELETE FROM products WHERE id LIKE $1", id_prefix(self._run_id) + "%"
            )
        finally:
            await conn.close()
        return int(status.split()[-1])

    def _take(self, count: int) -> int:
        first, self._next = self._next, self._next + count
        return first


def _phase(
    name: str,
    rate: float | None,
    count: int,
    arrivals: Arrivals,
    started_at: float,
    produce_seconds: float,
    sampler: Sampler,
) -> report.Phase:
    arrived = len(arrivals.latency)
    return report.Phase(
        name=name,
        rate=rate,
        records=count,
        arrived=arrived,
        produce_seconds=round(produce_seconds, 3),
        seconds=round(arrivals.last_arrival - started_at, 3) if arrived else 0.0,
        latency=report.latency(list(arrivals.latency.values())),
        usage=sampler.usage,
        machine_cpu_percent=sampler.machine_cpu_percent,
    )


# --- the services' HTTP endpoints ------------------------------------------------------


async def check_ready(settings: Settings) -> None:
    """Both services answer 200 on /ready, or the benchmark would measure an outage."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for name, url in (("api", settings.api_url), ("scheduler", settings.scheduler_url)):
            try:
                async with session.get(url + "/ready") as response:
                    ready = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ready = False
            if not ready:
                raise BenchError(f"the {name} at {url} is not ready: make up")


async def operate(settings: Settings, action: str) -> None:
    """``POST /consumer/<action>`` on the scheduler (pause or resume)."""
    headers = {"Authorization": f"Bearer {settings.token}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(f"{settings.scheduler_url}/consumer/{action}", headers=headers) as response,
    ):
        body = await response.json()
    if response.status != 200:
        raise BenchError(f"scheduler {action} answered {response.status}: {body}")
    log.info("scheduler %s: state %s", action, body.get("state"))
