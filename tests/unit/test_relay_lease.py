"""The relay's lease: publishing only while its lock connection answered recently."""

from __future__ import annotations

import asyncio

import pytest

from services.api.relay_lease import Lease, LeaseLost


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def answered_after(clock: Clock, seconds: float) -> str:
    clock.now += seconds
    return "answer"


async def test_a_lease_runs_from_when_the_answered_round_trip_was_sent() -> None:
    clock = Clock()
    lease = Lease(5, clock)
    assert lease.remaining() == 0
    assert await lease.round_trip(answered_after(clock, 2)) == "answer"
    # Sent at 100, answered at 102: the session lived past 100, not necessarily past 102.
    assert lease.remaining() == 3
    clock.now += 3
    assert lease.remaining() == 0


async def test_a_lost_connection_ends_the_lease_and_no_answer_renews_it() -> None:
    clock = Clock()
    lease = Lease(5, clock)
    await lease.round_trip(answered_after(clock, 0))
    lease.lose()
    assert lease.remaining() == 0
    await lease.round_trip(answered_after(clock, 0))
    assert lease.remaining() == 0


async def test_no_delivery_starts_outside_the_lease() -> None:
    started = False

    async def delivery() -> None:
        nonlocal started
        started = True

    with pytest.raises(LeaseLost, match="before the delivery started"):
        await Lease(5).within(delivery)
    assert not started


async def test_a_delivery_is_given_up_when_the_lease_ends() -> None:
    lease = Lease(0.2)
    await lease.round_trip(asyncio.sleep(0))
    with pytest.raises(LeaseLost, match="during the delivery"):
        await lease.within(lambda: asyncio.sleep(10))


async def test_a_delivery_is_given_up_the_moment_the_connection_is_lost() -> None:
    lease = Lease(30)
    await lease.round_trip(asyncio.sleep(0))
    asyncio.get_running_loop().call_later(0.05, lease.lose)
    started = asyncio.get_running_loop().time()
    with pytest.raises(LeaseLost):
        await lease.within(lambda: asyncio.sleep(10))
    assert asyncio.get_running_loop().time() - started < 1


async def test_a_statement_slower_than_a_whole_lease_loses_it() -> None:
    with pytest.raises(LeaseLost, match=r"took over 0\.1s"):
        await Lease(0.1).round_trip(asyncio.sleep(10))


async def test_a_timeout_of_the_delivery_itself_is_its_own() -> None:
    lease = Lease(30)
    await lease.round_trip(asyncio.sleep(0))

    async def delivery() -> None:
        raise TimeoutError("the broker")

    with pytest.raises(TimeoutError, match="the broker"):
        await lease.within(delivery)
