"""Capped exponential backoff with full jitter (the AWS architecture blog's variant)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .config import RetryConfig

T = TypeVar("T")


def backoff_delays(config: RetryConfig, rng: random.Random | None = None) -> Iterator[float]:
    """Endless delays: attempt n waits uniformly in [0, min(max, initial * 2**n)]."""
    rand = rng or random.Random()
    ceiling = min(config.max_delay, config.initial_delay)
    while True:
        yield rand.uniform(0, ceiling)
        ceiling = min(config.max_delay, ceiling * 2)


async def retry_forever(
    action: Callable[[], Awaitable[T]], *, what: str, config: RetryConfig, log: logging.Logger
) -> T:
    """Run ``action`` until it succeeds, backing off between failures.

    Used for connecting to a dependency at start-up: a service whose database or broker
    is down keeps trying (and answers 503 on ``/ready``) instead of exiting.
    """
    for attempt, delay in enumerate(backoff_delays(config), start=1):
        try:
            return await action()
        except Exception as exc:
            log.warning("%s failed (attempt %d: %s); retrying in %.2fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
