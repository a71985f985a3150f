"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in the run of tests/contract/test_openapi.py.

Every bound a schema can express is in the documents (the timestamp pattern names real days
of the years 1970 to 2099); these hooks cover what depends on the moment or on Kafka.

A record's timestamp may be at most FUTURE_TIMESTAMP_TOLERANCE_SECONDS after the server's
clock: generated date-times stay within 1970 and now, in the documented form (a Z or an
offset, milliseconds at most), and a case meant to be valid whose timestamp matches the
pattern but lies past that end (or in the first hours of 1970 written with an offset ahead
of UTC, before the range starts) is not sent as valid.

A replay's offsets must also lie within each partition's current range, which a schema
cannot say either: a case meant to be valid replays from offset 0, which every partition of
the test's topic holds (nothing expires there).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from services.common.contracts import TIMESTAMP_PATTERN, parse_timestamp
from services.common.ordering import FUTURE_TIMESTAMP_TOLERANCE, too_far_ahead


def _render(moment: datetime, offset_minutes: int, millis: bool) -> str:
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{local.microsecond // 1000:03d}"
    if offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


DATE_TIMES = st.builds(
    _render,
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime.now().replace(tzinfo=None) - timedelta(days=1),
        timezones=st.just(UTC),
    ),
    st.sampled_from([0, 0, 0, 60, -180, 330, 14 * 60 - 1]),
    st.booleans(),
)

schemathesis.openapi.format("date-time", DATE_TIMES)


def timestamps(value: Any) -> list[Any]:
    """Every value under a "timestamp" key, at any depth."""
    if isinstance(value, dict):
        found = [value["timestamp"]] if "timestamp" in value else []
        return found + [t for v in value.values() for t in timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in timestamps(v)]
    return []


def out_of_the_moments_range(value: str) -> bool:
    """A timestamp the pattern accepts whose instant is refused: past the future tolerance,
    or just before 1970 (anything else the pattern accepts, the check accepts)."""
    if not re.fullmatch(TIMESTAMP_PATTERN, value):
        return False  # refused by the schema already: sent as it is
    try:
        moment = parse_timestamp(value)
    except ValueError:
        return True
    return too_far_ahead(moment, datetime.now(UTC), FUTURE_TIMESTAMP_TOLERANCE) is not None


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    values = timestamps(case.body) + timestamps(case.query or {})
    return not any(out_of_the_moments_range(value) for value in values if isinstance(value, str))


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and case.operation.path == "/consumer/replay" and isinstance(case.body, dict):
        offsets = case.body.get("offsets")
        if isinstance(offsets, dict):
            case.body["offsets"] = dict.fromkeys(offsets, 0)
    return case
