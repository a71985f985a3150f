"""Capped exponential backoff with full jitter, and the retry loop built on it."""

from __future__ import annotations

import asyncio
import logging
import random
from itertools import islice

import pytest

from services.common.config import RetryConfig
from services.common.retry import Stopped, backoff_delays, retry, until_stopped

DEFAULTS = RetryConfig()  # 0.2 s first, 5 s largest


def ceilings(config: RetryConfig, count: int) -> list[float]:
    """What the n-th delay may reach: ``min(max_delay, initial_delay * 2**n)``."""
    return [min(config.max_delay, config.initial_delay * 2**n) for n in range(count)]


def test_the_ceiling_doubles_from_the_initial_delay_and_stops_at_the_largest() -> None:
    assert ceilings(DEFAULTS, 8) == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "config",
    [DEFAULTS, RetryConfig(initial_delay=0.05, max_delay=0.5), RetryConfig(1.0, 1.0)],
    ids=["defaults", "fast", "constant"],
)
def test_each_delay_is_a_uniform_draw_below_its_ceiling(config: RetryConfig) -> None:
    reference = random.Random(7)
    expected = [reference.uniform(0, ceiling) for ceiling in ceilings(config, 20)]

    assert list(islice(backoff_delays(config, random.Random(7)), 20)) == expected


def test_every_delay_lies_between_zero_and_its_ceiling() -> None:
    limits = ceilings(DEFAULTS, 12)
    largest = [0.0] * len(limits)

    for seed in range(500):
        for n, delay in enumerate(islice(backoff_delays(DEFAULTS, random.Random(seed)), 12)):
            assert 0 <= delay <= limits[n]
            largest[n] = max(largest[n], delay)

    # Full jitter: over many runs the delays reach close to each ceiling.
    assert all(high > 0.95 * limit for high, limit in zip(largest, limits, strict=True))


def test_the_same_seed_gives_the_same_delays() -> None:
    first = list(islice(backoff_delays(DEFAULTS, random.Random(42)), 30))
    second = list(islice(backoff_delays(DEFAULTS, random.Random(42)), 30))

    assert first == second


def test_the_delays_never_end() -> None:
    delays = backoff_delays(DEFAULTS, random.Random(1))

    assert len(list(islice(delays, 1000))) == 1000


def test_the_first_delay_is_capped_too_when_the_initial_delay_exceeds_the_largest() -> None:
    config = RetryConfig(initial_delay=10.0, max_delay=1.0)

    for seed in range(100):
        first = next(backoff_delays(config, random.Random(seed)))
        assert first <= config.max_delay


# --- the retry loop ----------------------------------------------------------------

INSTANT = RetryConfig(initial_delay=0.001, max_delay=0.001)
LOG = logging.getLogger("test")


class Flaky:
    """Fails ``failures`` times with ``error``, then returns how often it was called."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("down")
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


async def test_retry_returns_the_first_success() -> None:
    action = Flaky(failures=3)
    seen: list[Exception] = []

    assert await retry(action, what="x", config=INSTANT, log=LOG, on_failure=seen.append) == 4
    assert len(seen) == 3


async def test_retry_gives_up_after_its_attempts_with_the_last_error() -> None:
    action = Flaky(failures=10)

    with pytest.raises(ConnectionError):
        await retry(action, what="x", config=INSTANT, log=LOG, attempts=3)
    assert action.calls == 3


async def test_retry_lets_other_errors_through_at_once() -> None:
    action = Flaky(failures=1, error=KeyError("bug"))

    with pytest.raises(KeyError):
        await retry(action, what="x", config=INSTANT, log=LOG, retry_on=(ConnectionError,))
    assert action.calls == 1


async def test_setting_the_stop_event_ends_the_wait_between_attempts() -> None:
    stop = asyncio.Event()
    action = Flaky(failures=10**9)
    slow = RetryConfig(initial_delay=60, max_delay=60)
    waiting = asyncio.create_task(retry(action, what="x", config=slow, log=LOG, stop=stop))
    await asyncio.sleep(0.01)

    stop.set()

    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, timeout=1)
    assert action.calls == 1


async def test_until_stopped_cancels_the_work_when_the_event_is_set() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(until_stopped(forever(), stop))
    await asyncio.sleep(0.01)
    stop.set()

    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, timeout=1)
    assert cancelled.is_set()
    assert await until_stopped(asyncio.sleep(0, result=7), stop=None) == 7


async def test_an_attempt_longer_than_the_largest_delay_starts_the_backoff_over() -> None:
    config = RetryConfig(initial_delay=0.001, max_delay=0.04)
    delays: list[float] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            delays.append(float(record.args[-1]))  # type: ignore[index,arg-type]

    log = logging.getLogger("test.backoff")
    log.addHandler(Recorder())
    for _ in range(5):
        calls = 0

        async def long_then_fails() -> None:
            nonlocal calls
            calls += 1
            if calls == 4:
                await asyncio.sleep(0.05)  # served for longer than the largest delay
            if calls < 6:
                raise ConnectionError("down")

        await retry(long_then_fails, what="x", config=config, log=log)

    # Each 4th delay is drawn below the initial ceiling again (not below 0.008): the
    # chance of that without the reset is 8**-5.
    assert len(delays) == 25
    assert all(delay <= 0.001 for delay in delays[3::5])
