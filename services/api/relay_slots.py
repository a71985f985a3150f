"""Relay slots: the share of the outbox one replica's relay publishes.

The outbox is partitioned by a hash of the product key into K slots (``outbox_slot`` in
``sql/005_outbox_slots.sql``; K is stored in ``outbox_relay_config``). A relay publishes
the rows of the slots whose advisory lock it holds on its own connection, so one product's
events are published by one relay at a time, in id order, while up to K relays publish at
once. The locks go with the connection: when a replica dies, PostgreSQL ends its session
and the survivors take its slots at their next rebalance (every ``REBALANCE_INTERVAL``).

Each live relay also holds a member lock, so every relay can count the others in
``pg_locks`` and aim at a fair share (``fair_share``); what it takes beyond that it gives
back, between batches, never during one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from . import repository
from .database import OUTBOX_RELAY_LOCK

log = logging.getLogger(__name__)

# Advisory lock spaces (two-key form: the space, then a number), unique within the database.
# In pg_locks they appear as locktype 'advisory', objsubid 2, classid = space, objid = number.
SLOT_LOCKS = 720_431_102  # number = the slot
MEMBER_LOCKS = 720_431_103  # number = the relay connection's backend pid

REBALANCE_INTERVAL = 1.0  # seconds between two looks at K, the members and the free slots


def fair_share(slots: int, members: int) -> int:
    """The most slots one relay keeps when ``members`` relays share ``slots``."""
    return math.ceil(slots / max(members, 1))


@dataclass(frozen=True)
class Plan:
    """What one rebalance does: slots to give back, then slots to try, up to ``take``."""

    release: tuple[int, ...]
    candidates: tuple[int, ...]
    take: int


def plan(slots: int, members: int, held: Iterable[int], taken: Iterable[int], seed: int) -> Plan:
    """The rebalance of a relay holding ``held``, when ``taken`` are held by any relay.

    Slots beyond K (after K was lowered) and the highest slots beyond the fair share are
    released. Free slots are tried starting at ``seed`` modulo K, so that relays starting
    together try different slots first.
    """
    mine = sorted(held)
    share = fair_share(slots, members)
    keep = [slot for slot in mine if slot < slots][:share]
    release = tuple(slot for slot in mine if slot not in keep)
    busy = set(taken) | set(mine)
    free = sorted(
        (slot for slot in range(slots) if slot not in busy), key=lambda s: (s - seed) % slots
    )
    return Plan(release, tuple(free), max(0, share - len(keep)))


class RelaySlots:
    """The slots a relay holds on its connection (``held``), kept at a fair share."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._seed = conn.get_server_pid()
        self._next_rebalance = 0.0
        self.held: frozenset[int] = frozenset()

    async def join(self) -> bool:
        """Become a member; False while a relay of an earlier version publishes everything.

        Earlier versions took ``OUTBOX_RELAY_LOCK`` exclusively; holding it shared keeps
        them from relaying alongside slot relays during a rolling upgrade (which would
        break per-product order), and waits for the last of them to stop.
        """
        if not await repository.try_lock_shared(self._conn, OUTBOX_RELAY_LOCK):
            return False
        await repository.lock_pair(self._conn, MEMBER_LOCKS, self._seed)
        return True

    def due(self) -> bool:
        return time.monotonic() >= self._next_rebalance

    async def rebalance(self) -> frozenset[int]:
        """Give back what is beyond the fair share, take free slots up to it; the new set."""
        self._next_rebalance = time.monotonic() + REBALANCE_INTERVAL
        view = await repository.relay_view(self._conn, MEMBER_LOCKS, SLOT_LOCKS)
        step = plan(view.slots, view.members, self.held, view.taken, self._seed)
        held = set(self.held)
        for slot in step.release:
            await repository.unlock_pair(self._conn, SLOT_LOCKS, slot)
            held.discard(slot)
        taken = 0
        for slot in step.candidates:
            if taken == step.take:
                break
            if await repository.try_lock_pair(self._conn, SLOT_LOCKS, slot):
                held.add(slot)
                taken += 1
        if held != self.held:
            log.info(
                "outbox relay slots: %s of %d (%d relays)",
                _ranges(sorted(held)) or "none",
                view.slots,
                view.members,
            )
        self.held = frozenset(held)
        return self.held


def _ranges(slots: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``, for the log."""
    parts: list[str] = []
    start = previous = None
    for slot in [*slots, None]:
        if slot is not None and previous is not None and slot == previous + 1:
            previous = slot
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = slot
    return ",".join(parts)
