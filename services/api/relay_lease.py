"""The relay's lease: how long it may still publish the slots its lock connection holds.

A relay's slot locks live in its PostgreSQL session. When that session's server is lost, the
locks are gone with it, and once a standby is promoted any relay may take them there. The
lease keeps the old holder from publishing by then (docs/high-availability.md, "How the relay
is fenced"): every round trip answered on the lock connection renews it to ``seconds`` after
the round trip was *sent* (the session, and its locks, lived at least that long); the loss
of the connection ends it at once; a delivery to Kafka is started only within the lease and
waited for only until it ends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LeaseLost(Exception):
    """The lease ended (a silent connection) or its connection was lost."""


class Lease:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = -math.inf
        self._lost = False
        self._window: asyncio.Timeout | None = None

    def lose(self, *_: Any) -> None:
        """The connection is gone (a termination listener): end the lease now, and the
        delivery waited for with it."""
        self._lost = True
        if self._window is not None:
            self._window.reschedule(asyncio.get_running_loop().time())

    def remaining(self) -> float:
        """Seconds the lease still runs (0 once it ended)."""
        return 0.0 if self._lost else max(0.0, self._end - self._clock())

    async def round_trip(self, statement: Awaitable[T]) -> T:
        """Await a statement on the lock connection and renew the lease from when it was
        sent; one that takes longer than a whole lease means the connection cannot hold it."""
        sent = self._clock()
        try:
            async with asyncio.timeout(self.seconds):
                result = await statement
        except TimeoutError:
            raise LeaseLost(f"a statement took over {self.seconds:g}s") from None
        if not self._lost:
            self._end = max(self._end, sent + self.seconds)
        return result

    async def within(self, delivery: Callable[[], Awaitable[T]]) -> T:
        """Start ``delivery`` only while the lease runs, and give it up when the lease ends."""
        remaining = self.remaining()
        if remaining <= 0:
            raise LeaseLost("the lease ended before the delivery started")
        window = asyncio.timeout(remaining)
        try:
            async with window:
                self._window = window
                return await delivery()
        except TimeoutError:
            if window.expired():
                raise LeaseLost("the lease ended during the delivery") from None
            raise
        finally:
            self._window = None
