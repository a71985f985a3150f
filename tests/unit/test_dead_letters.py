"""What a dead letter says about its source record, what its re-drive sends, and which of
concurrent claims on a re-drive wins."""

from __future__ import annotations

import pytest

from services.common.config import KafkaConfig
from services.scheduler.dead_letters import (
    Claim,
    DeadLetter,
    NotADeadLetter,
    holder,
    read_dead_letter,
    redrive_headers,
    token_digest,
    won,
)
from services.scheduler.records import (
    Coordinates,
    Poison,
    bounded_int,
    dead_letter_headers,
    redrive_of,
    to_work,
)

from ..helpers import encode, manual_record
from .fakes import EXAMPLE_TIMESTAMP_MS, FakeRecord


def dead_lettered(record: FakeRecord, position: int = 7) -> DeadLetter:
    """``record`` dead-lettered by the consumer and read back at ``position`` of the DLQ."""
    poison = Poison(record, "validate", "invalid fields: {}")
    return read_dead_letter(
        FakeRecord(
            record.value,
            topic="cadastro-produtos.dlq",
            partition=1,
            offset=position,
            key=record.key,
            headers=dead_letter_headers(poison),
        )
    )


def test_a_dead_letter_names_its_source_record_and_timestamp() -> None:
    dead = dead_lettered(FakeRecord(b"{}", key=b"k", headers=[("x", b"1")]))

    assert dead.source == Coordinates("cadastro-produtos", 2, 41)
    assert dead.position == Coordinates("cadastro-produtos.dlq", 1, 7)
    assert (dead.timestamp, dead.attempt, dead.stage) == (EXAMPLE_TIMESTAMP_MS, 0, "validate")


def test_a_record_without_the_schedulers_headers_is_not_a_dead_letter() -> None:
    with pytest.raises(NotADeadLetter):
        read_dead_letter(FakeRecord(b"{}", headers=[("dlq-stage", b"decode")]))


def test_a_redrive_carries_the_original_headers_and_where_it_comes_from() -> None:
    dead = dead_lettered(
        FakeRecord(b"{}", headers=[("traceparent", b"00-ab-cd-01"), ("dlq-own", b"x")])
    )

    assert redrive_headers(dead, 1, corrected=False) == [
        ("traceparent", b"00-ab-cd-01"),
        ("dlq-own", b"x"),  # the record's own, kept as original-dlq-own on the DLQ
        ("redrive-of", b"cadastro-produtos/2/41"),
        ("redrive-attempt", b"1"),
        ("redrive-corrected", b"false"),
    ]


def test_a_redrive_dead_lettered_again_keeps_its_entry_and_attempt_count() -> None:
    first = dead_lettered(FakeRecord(b"{}", key=b"k"))
    again = dead_lettered(
        FakeRecord(
            b"{}", partition=0, offset=900, key=b"k", headers=redrive_headers(first, 1, True)
        ),
        position=30,
    )

    assert again.source == first.source == Coordinates("cadastro-produtos", 2, 41)
    assert again.attempt == 1
    assert redrive_headers(again, 2, False)[-3:] == [
        ("redrive-of", b"cadastro-produtos/2/41"),
        ("redrive-attempt", b"2"),
        ("redrive-corrected", b"false"),
    ]


def test_a_redriven_record_goes_to_the_api_with_its_original_coordinates() -> None:
    record = FakeRecord(
        encode(manual_record("p1")),
        partition=0,
        offset=900,
        headers=[("redrive-of", b"cadastro-produtos/2/41")],
    )

    assert to_work(record).item["source"] == {
        "topic": "cadastro-produtos",
        "partition": 2,
        "offset": 41,
        "incarnation": None,
    }


@pytest.mark.parametrize(
    "value",
    [b"", b"t/1", b"/1/2", b"t/-1/2", b"t/1/x", b"t/2147483648/0", b"t/0/9223372036854775808"],
)
def test_a_malformed_redrive_of_is_ignored_and_the_record_keeps_its_own_coordinates(
    value: bytes,
) -> None:
    record = FakeRecord(encode(manual_record("p1")), headers=[("redrive-of", value)])

    assert redrive_of(record.headers) is None
    assert to_work(record).item["source"]["offset"] == 41


def test_the_earliest_claim_wins_whatever_order_they_are_read_in() -> None:
    claims = [Claim(12, "b"), Claim(10, "a"), Claim(15, "c")]

    assert holder(claims) == Claim(10, "a")
    assert won(Claim(10, "a"), claims)
    assert not won(Claim(12, "b"), claims)
    assert not won(Claim(15, "c"), claims)


def test_a_claim_read_back_alone_wins_and_later_ones_do_not_change_that() -> None:
    assert won(Claim(10, "a"), [Claim(10, "a")])
    # Claims written after ours cannot beat it, read or not yet read.
    assert won(Claim(10, "a"), [Claim(10, "a"), Claim(9_999, "z")])


def test_a_claim_written_after_the_holders_expired_takes_the_attempt_over() -> None:
    stale = Claim(10, "a", at=1_000, expires=31_000)
    early = Claim(11, "b", at=30_999, expires=60_999)  # while a still held it
    taker = Claim(12, "c", at=31_000, expires=61_000)
    late = Claim(13, "d", at=60_000, expires=90_000)  # while c holds it

    claims = [late, taker, early, stale]
    assert holder(claims) == taker
    assert won(stale, [stale, early])  # a held it until c came
    assert not won(early, claims)
    assert won(taker, claims)
    assert not won(late, claims)
    # A claim without a deadline (written before claims had one) is held for good.
    assert holder([Claim(10, "a"), Claim(11, "b", at=10**15)]) == Claim(10, "a")
    assert holder([]) is None


def test_the_token_is_recorded_as_a_short_digest_only() -> None:
    digest = token_digest("s3cret-token")

    assert len(digest) == 12 and "s3cret" not in digest
    assert digest == token_digest("s3cret-token") != token_digest("other")


def test_the_redrive_state_topic_follows_the_dead_letter_topic_unless_named() -> None:
    assert KafkaConfig(topic_dlq="in.dlq").topic_dlq_redrives == "in.dlq.redrives"
    assert KafkaConfig(topic_dlq_redrives="state").topic_dlq_redrives == "state"
    assert "cadastro-produtos.dlq.redrives" in KafkaConfig().compacted_topics


@pytest.mark.parametrize(
    ("text", "maximum", "minimum", "expected"),
    [
        ("0", 9, 0, 0),
        ("0007", 9, 0, 7),
        ("10", 9, 0, None),
        ("-3", 9, -5, -3),
        ("-3", 9, 0, None),
        ("²", 9, 0, None),  # a digit to str.isdigit(), not to int()
        ("+1", 9, 0, None),
        ("", 9, 0, None),
        (None, 9, 0, None),
        ("9" * 5000, 2**63 - 1, 0, None),  # int() refuses over 4,300 digits
    ],
)
def test_bounded_int_reads_only_short_ascii_integers_in_range(
    text: str | None, maximum: int, minimum: int, expected: int | None
) -> None:
    assert bounded_int(text, maximum, minimum) == expected


def test_headers_with_thousands_of_digits_are_read_as_absent() -> None:
    digits = "9" * 5000
    assert redrive_of([("redrive-of", f"cadastro-produtos/0/{digits}".encode())]) is None
    record = FakeRecord(b"{}", headers=[("redrive-attempt", digits.encode())])
    dead = dead_lettered(record)
    assert dead.attempt == 0
    forged = [
        (name, digits.encode() if name == "dlq-source-timestamp" else value)
        for name, value in dead.headers
    ]
    assert read_dead_letter(FakeRecord(b"{}", headers=forged)).timestamp == -1
