"""JSON on the hot path: orjson, with money as JSON numbers.

Amounts are bounded to fourteen significant digits (see ``contracts.PRICE_LIMIT``), which a
binary double carries exactly through a round trip, so ``float(amount)`` prints the same
decimal text.
"""

from __future__ import annotations

import decimal
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


JSONDecodeError = orjson.JSONDecodeError
# JSON encoded already, embedded as it is in what ``dumps`` encodes.
Fragment = orjson.Fragment
