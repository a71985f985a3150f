"""Capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from services.common.config import RetryConfig
from services.common.retry import backoff_delays

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
