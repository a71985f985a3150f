"""The one retry loop of both services: capped exponential backoff with full jitter (the AWS
architecture blog's variant), bounded or not, and stoppable."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .config import RetryConfig

T = TypeVar("T")


class Stopped(Exception):
    """A wait ended because its stop event was set."""


def backoff_delays(config: RetryConfig, rng: random.Random | None = None) -> Iterator[float]:
    """Endless delays: attempt n waits uniformly in [0, min(max, initial * 2**n)]."""
    rand = rng or random.Random()
    ceiling = min(config.max_delay, config.initial_delay)
    while True:
        yield rand.uniform(0, ceiling)
        ceiling = min(config.max_delay, ceiling * 2)


async def until_stopped(awaitable: Awaitable[T], stop: asyncio.Event | None) -> T:
    """Await ``awaitable``; if ``stop`` is set first, cancel it and raise ``Stopped``."""
    if stop is None:
        return await awaitable
    work = asyncio.ensure_future(awaitable)
    if stop.is_set():
        work.cancel()
    else:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()
    await asyncio.wait((work,))  # its cancellation finished; its own errors stay in it
    if work.cancelled():
        if not stop.is_set():  # cancelled from outside, not by us
            raise asyncio.CancelledError
        raise Stopped
    return work.result()


async def retry(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    config: RetryConfig,
    log: logging.Logger,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    attempts: int | None = None,
    stop: asyncio.Event | None = None,
    on_failure: Callable[[Exception], None] | None = None,
) -> T:
    """Run ``action`` until it succeeds, backing off between failures.

    Only ``retry_on`` failures are retried; any other propagates at once, and so does the
    last one after ``attempts`` attempts (unbounded when None). Setting ``stop`` ends a
    wait between attempts with ``Stopped`` (an attempt in progress is the action's to end:
    wrap it in ``until_stopped`` to cancel it). ``on_failure`` runs after each retried
    failure (to count it, or pause what depends on it). An attempt that lasted longer than
    the largest delay made progress (a connection that served for hours, say): the backoff
    starts over after it.
    """
    delays = backoff_delays(config)
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        try:
            return await action()
        except Stopped:
            raise
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            if on_failure is not None:
                on_failure(exc)
            if time.monotonic() - started > config.max_delay:
                delays = backoff_delays(config)
            delay = next(delays)
            log.warning("%s failed (attempt %d: %s); retrying in %.2fs", what, attempt, exc, delay)
        await until_stopped(asyncio.sleep(delay), stop)
