"""The outbox relay: publishes what the API persisted on ``produtos-persistidos``.

Rows written to ``outbox`` in the same transaction as ``products`` are published in id
order, each with an ``event-id`` header (the row's id), and deleted once the broker
acknowledged them. One relay is active per database (an advisory lock held on the relay's
own connection), so several API replicas keep per-product order. A crash between the
acknowledgement and the delete publishes those events again: at-least-once, and the
event id lets a consumer drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from ..common.config import RetryConfig
from ..common.http import Metrics
from ..common.kafka import ManagedProducer, Outgoing
from ..common.retry import Stopped, retry, until_stopped
from . import repository
from .database import OUTBOX_RELAY_LOCK, Database

log = logging.getLogger(__name__)

CHANNEL = "outbox"
CONNECT_TIMEOUT = 10.0


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: ManagedProducer,
        metrics: Metrics,
        *,
        batch_size: int,
        poll_interval: float,
        retry: RetryConfig,
    ) -> None:
        self._dsn = dsn
        self._producer = producer
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retry = retry
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self.active = False
        metrics.counter("outbox_published_total", "Events published on produtos-persistidos.")
        metrics.gauge("outbox_relay_active", "1 while this replica holds the relay lock.")

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
                on_failure=lambda _: self._set_active(False),
            )
        except Stopped:
            pass

    async def _run_connected(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", OUTBOX_RELAY_LOCK):
                # Another replica relays; take over if its session ends.
                if await self._sleep(self._poll_interval * 5):
                    return
            self._set_active(True)
            await conn.add_listener(CHANNEL, self._on_notify)
            log.info("outbox relay active")
            while not self._stopping.is_set():
                self._wake.clear()
                rows = await repository.outbox_batch(conn, self._batch_size)
                if rows:
                    await self._publish(rows)
                    await repository.delete_outbox(conn, [row["id"] for row in rows])
                    continue
                await self._sleep(self._poll_interval, wake=True)
        finally:
            self._set_active(False)
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())  # also releases the advisory lock

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        await self._producer.send(
            [
                Outgoing(
                    row["topic"],
                    value=row["payload"].encode(),
                    key=row["key"].encode(),
                    headers=[
                        ("event-id", str(row["id"]).encode()),
                        ("content-type", b"application/json"),
                    ],
                )
                for row in rows
            ]
        )
        self._metrics.inc("outbox_published_total", len(rows))
        log.debug("published %d events up to outbox id %d", len(rows), rows[-1]["id"])

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float, wake: bool = False) -> bool:
        """Wait for the timeout, a stop request or (with ``wake``) a notification.

        Returns whether the relay is stopping.
        """
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if wake:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._stopping.is_set()

    def _set_active(self, active: bool) -> None:
        self.active = active
        self._metrics.set("outbox_relay_active", 1 if active else 0)
