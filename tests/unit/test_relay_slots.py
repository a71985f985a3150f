"""How a relay decides which slots to keep, give back and try (the rebalance plan)."""

from __future__ import annotations

import pytest

from services.api.relay_slots import Plan, _ranges, fair_share, plan


@pytest.mark.parametrize(
    ("slots", "members", "share"),
    [(16, 1, 16), (16, 2, 8), (16, 3, 6), (16, 16, 1), (16, 20, 1), (1, 3, 1), (16, 0, 16)],
)
def test_the_fair_share_is_the_slots_divided_by_the_relays_rounded_up(
    slots: int, members: int, share: int
) -> None:
    assert fair_share(slots, members) == share


def test_a_lone_relay_takes_every_slot() -> None:
    assert plan(4, 1, held=[], taken=[], seed=0) == Plan((), (0, 1, 2, 3), 4)


def test_free_slots_are_tried_from_the_seed_on_so_relays_starting_together_differ() -> None:
    assert plan(4, 2, held=[], taken=[], seed=6).candidates == (2, 3, 0, 1)


def test_a_relay_above_its_share_gives_back_its_highest_slots() -> None:
    assert plan(4, 2, held=[0, 1, 2, 3], taken=[0, 1, 2, 3], seed=0) == Plan((2, 3), (), 0)


def test_a_relay_below_its_share_tries_only_slots_no_relay_holds() -> None:
    step = plan(8, 2, held=[0, 1], taken=[0, 1, 2, 3, 4], seed=0)

    assert step == Plan((), (5, 6, 7), 2)


def test_slots_beyond_a_lowered_slot_count_are_given_back_first() -> None:
    assert plan(4, 1, held=[1, 6, 7], taken=[1, 6, 7], seed=0) == Plan((6, 7), (0, 2, 3), 3)


def test_when_a_relay_dies_the_survivors_shares_cover_every_slot() -> None:
    # Three relays held 6, 5 and 5 of 16; the first dies: the others' share becomes 8.
    second, third = list(range(6, 11)), list(range(11, 16))
    step = plan(16, 2, held=second, taken=second + third, seed=0)

    assert step.release == ()
    assert step.take == 3
    assert set(step.candidates) == set(range(6))


def test_the_log_shows_held_slots_as_ranges() -> None:
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert _ranges([3]) == "3"
    assert _ranges([]) == ""
