"""The outbox relay: publishes what the API persisted on ``produtos-persistidos``.

Rows written to ``outbox`` in the same transaction as ``products`` are published in id
order, each with an ``event-id`` header (the row's id), and deleted once the broker
acknowledged them. Each API replica runs a relay; the relays share the outbox by slots (a
hash of the product key, one advisory lock per slot, see ``relay_slots``), so several
publish at once and each product's events keep their order. A crash between the
acknowledgement and the delete publishes those events again: at-least-once, and the
event id lets a consumer drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from typing import Any

import asyncpg

from ..common.config import RetryConfig
from ..common.contracts import EVENT_CONTENT_TYPE
from ..common.kafka import ManagedProducer, Outgoing
from ..common.metrics import ApiMetrics
from ..common.retry import Stopped, retry, until_stopped
from ..common.tracing import TRACEPARENT, SpanKind, Tracing
from . import repository
from .database import Database, connect
from .relay_lease import Lease
from .relay_slots import REBALANCE_INTERVAL, RelaySlots

log = logging.getLogger(__name__)

CHANNEL = "outbox"
# Names the relay's session in pg_stat_activity (and so the holder of slots in pg_locks).
APPLICATION_NAME = f"fluxo-outbox-relay {socket.gethostname()} pid {os.getpid()}"
# A replica whose machine vanishes (no FIN) loses its session, and so its slots, within
# about 11 s over TCP; a crashed process loses it at once.
KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
CONNECT_TIMEOUT = 10.0


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: ManagedProducer,
        metrics: ApiMetrics,
        tracing: Tracing,
        *,
        batch_size: int,
        poll_interval: float,
        retry: RetryConfig,
        lease: float,
    ) -> None:
        self._dsn = dsn
        self._lease_seconds = lease
        self._producer = producer
        self._metrics = metrics
        self._tracing = tracing
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry = retry
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.active = False
        self.slots: frozenset[int] = frozenset()  # the relay slots this replica publishes

    def stop(self) -> None:
        """Ask the relay to finish the batch in flight and return."""
        self._stopping.set()
        self._wake.set()

    async def run(self, database: Database) -> None:
        """Relay until stopped; a lost connection or a failed delivery is retried."""
        try:
            # The outbox table exists once the database is open.
            await until_stopped(database.wait_open(), self._stopping)
            await retry(
                self._run_connected,
                what="relaying the outbox",
                config=self._retry,
                log=log,
                stop=self._stopping,
                on_failure=lambda _: self._set_slots(frozenset()),
            )
        except Stopped:
            pass

    async def _run_connected(self) -> None:
        conn = await connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={
                "application_name": APPLICATION_NAME,
                # The relay only deletes rows the broker acknowledged: a delete lost in a
                # server crash publishes those events again, as a relay crash does
                # (at-least-once, the event id tells them apart), and nothing is lost. So its
                # commits do not wait for the WAL flush.
                "synchronous_commit": "off",
                **KEEPALIVES,
            },
        )
        lease = Lease(self._lease_seconds)

        def lost(*_: object) -> None:
            # The session, and so its locks, is gone: publish nothing more, now.
            lease.lose()
            self._set_slots(frozenset())
            self._wake.set()

        conn.add_termination_listener(lost)
        try:
            slots = RelaySlots(conn)
            while not await slots.join():
                # A relay of an earlier version publishes everything; wait until it stops.
                if await self._sleep(self._poll_interval * 5):
                    return
            await conn.add_listener(CHANNEL, self._on_notify)
            log.info("outbox relay started")
            while not self._stopping.is_set():
                if slots.due():  # between batches: a slot changes hands with nothing in flight
                    self._set_slots(await lease.round_trip(slots.rebalance()))
                self._wake.clear()
                # The read renews the lease: the publish that follows has nearly all of it.
                rows = await lease.round_trip(
                    repository.outbox_batch(conn, self._batch_size, self.slots)
                )
                if rows:
                    await lease.within(functools.partial(self._publish, rows))
                    await lease.round_trip(
                        repository.delete_outbox(conn, [row["id"] for row in rows])
                    )
                    if len(rows) == self._batch_size:
                        continue  # more may wait
                # A row committed after the read above notified after the wake was cleared,
                # so this returns at once for it. The wait is shorter than the lease, so an
                # idle relay renews it too.
                await self._sleep(min(self._poll_interval, REBALANCE_INTERVAL), wake=True)
        finally:
            self._set_slots(frozenset())
            # Also releases the advisory locks; a connection gone silent is dropped after 1 s.
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=1))

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        started = time.perf_counter()
        with self._tracing.span(
            f"publish {rows[0]['topic']}",
            kind=SpanKind.PRODUCER,
            links=self._tracing.links(row["traceparent"] for row in rows),
            attributes={"messaging.batch.message_count": len(rows)},
        ):
            await self._producer.send_batched(
                [
                    Outgoing(
                        row["topic"],
                        value=row["payload"].encode(),
                        key=row["key"].encode(),
                        headers=event_headers(row),
                    )
                    for row in rows
                ]
            )
        acknowledged = time.time()
        self._metrics.outbox_publish_duration.observe(time.perf_counter() - started)
        self._metrics.outbox_published.inc(len(rows))
        for row in rows:
            if row["source_timestamp"] is not None:
                self._metrics.end_to_end_latency.observe(acknowledged - row["source_timestamp"])
        log.debug("published %d events up to outbox id %d", len(rows), rows[-1]["id"])

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float, wake: bool = False) -> bool:
        """Wait for the timeout, a stop request or (with ``wake``) a notification.

        Returns whether the relay is stopping.
        """
        # stop() sets both events, so waiting on one of them is enough (and needs no task);
        # a stop that came before the loop cleared the wake is seen here.
        if self._stopping.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await (self._wake if wake else self._stopping).wait()
        return self._stopping.is_set()

    def _set_slots(self, slots: frozenset[int]) -> None:
        self.slots = slots
        self.active = bool(slots)
        self._metrics.outbox_relay_active.set(1 if slots else 0)
        self._metrics.outbox_relay_slots.set(len(slots))


CONTENT_TYPE = EVENT_CONTENT_TYPE.encode()


def event_headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    """The event's id, content type (with its schema's version) and the trace of the record
    it comes from."""
    headers = [("event-id", str(row["id"]).encode()), ("content-type", CONTENT_TYPE)]
    if row["traceparent"]:
        headers.append((TRACEPARENT, row["traceparent"].encode()))
    return headers
