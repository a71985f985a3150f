"""The dead-letter index's pages: what a filter by key or time reads is a shortcut, so
every page must hold exactly what a scan of the whole index would."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.common.config import KafkaConfig, RetryConfig
from services.common.kafka import ManagedProducer
from services.scheduler.dead_letter_index import DeadLetterIndex, Entry, Filter, parse_cursor
from services.scheduler.dead_letters import DeadLetter
from services.scheduler.records import Coordinates
from services.scheduler.redrives import RedriveLog

from .fakes import EXAMPLE_TIMESTAMP_MS


def index_of(seed: int) -> DeadLetterIndex:
    """300 dead letters of 100 source records; a record dead-lettered again may carry
    another key (a correction that changed its productId)."""
    config, retry = KafkaConfig(), RetryConfig()
    producer = ManagedProducer(config, retry)
    index = DeadLetterIndex(config, retry, producer, RedriveLog(config, retry, producer))
    rng = random.Random(seed)
    for offset in range(300):
        source = Coordinates("cadastro-produtos", rng.randrange(3), rng.randrange(100))
        key = rng.choice([None, b"a", b"b", b"c", b"\xff"])
        index.add(
            DeadLetter(
                position=Coordinates("cadastro-produtos.dlq", 0, offset),
                at=EXAMPLE_TIMESTAMP_MS + rng.randrange(60_000),
                place=source,
                source=source,
                timestamp=EXAMPLE_TIMESTAMP_MS,
                attempt=0,
                stage=rng.choice(["decode", "validate"]),
                reason="",
                key=key,
                value=b"{}",
                headers=[],
            )
        )
    return index


def moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(EXAMPLE_TIMESTAMP_MS / 1000 + seconds, UTC)


FILTERS = [
    Filter(),
    Filter(key="a"),
    Filter(key="\ufffd"),
    Filter(key="absent"),
    Filter(since=moment(20)),
    Filter(until=moment(40)),
    Filter(since=moment(10), until=moment(30), stage="decode"),
    Filter(key="b", since=moment(15), until=moment(45)),
    Filter(since=moment(50), until=moment(10)),
]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("criteria", FILTERS, ids=repr)
def test_every_page_holds_what_a_scan_of_the_whole_index_would(seed: int, criteria: Filter) -> None:
    index = index_of(seed)
    everything = sorted(index.entries.values(), key=lambda e: e.sort_key, reverse=True)
    expected = [entry for entry in everything if index.matches(entry, criteria)]

    paged: list[Entry] = []
    cursor = None
    while True:
        page, following = index.page(criteria, cursor, 7)
        paged += page
        if following is None:
            break
        cursor = parse_cursor(following)
    assert paged == expected
    assert index.matching(criteria) == expected
