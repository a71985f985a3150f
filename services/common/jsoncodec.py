"""JSON on the hot path: orjson, with money as JSON numbers.

Amounts are bounded to fourteen significant digits (see ``contracts.PRICE_LIMIT``), which a
binary double carries exactly through a round trip, so ``float(amount)`` prints the same
decimal text. What clients and producers send is read with ``loads_exact``, so that a
number a double would round (``1e-400``, ``0.1000000000000000001``) is judged as written.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which loads_exact keeps exact (an unknown
        # field of a record may hold one); the standard library writes any integer.
        text = json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))
        return text.encode()


JSONDecodeError = orjson.JSONDecodeError

# Deepest nesting accepted. orjson parses up to 1,024 levels, past what Python's own
# recursion limit lets validation print or compare (a RecursionError, not a validation
# error); no document of this project nests more than a few levels.
MAX_DEPTH = 64


def loads(data: bytes | str) -> Any:
    """Parse JSON; ``JSONDecodeError`` for invalid JSON or nesting deeper than MAX_DEPTH."""
    value = orjson.loads(data)
    if isinstance(value, dict | list) and _may_nest_deeper(data) and _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> JSONDecodeError:
    return JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)


def _may_nest_deeper(data: bytes | str) -> bool:
    """False when the text opens too few arrays and objects to nest deeper than MAX_DEPTH
    (every level opens one): a count in C spares nearly every document the walk."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH
    return data.count(b"[") + data.count(b"{") > MAX_DEPTH


# Numbers with a fraction or an exponent as Decimal; made once (json.loads with options
# builds a decoder per call).
_EXACT = json.JSONDecoder(parse_float=decimal.Decimal)


class DuplicateKeyError(JSONDecodeError):
    """An object names a key twice. Parsers disagree on which value wins (the first, the
    last, an error), a known way to smuggle a value past a validator; it is refused."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears twice in one object", "", 0)
        self.key = key

    def __str__(self) -> str:
        return self.msg


def loads_exact(data: bytes | str) -> Any:
    """``loads``, with every number as written: a fraction or an exponent as a ``Decimal``,
    an integer of any size as an ``int`` (a double would round them); an object that names
    a key twice is refused (``DuplicateKeyError``)."""
    value = orjson.loads(data)
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:
        # What orjson parsed it writes back unless it nests past orjson's writing limit
        # (255 levels), far deeper than MAX_DEPTH.
        raise _too_deep() from None
    if written == (data if isinstance(data, bytes) else data.encode()):
        # The text is orjson's own writing of what it parsed, as the services write their
        # records and batches: every key of it was kept, so none came twice, and each
        # number is spelled as orjson writes its double, which gives its exact Decimal.
        # One walk both measures the depth and replaces the doubles.
        if _exact_numbers(value):
            raise _too_deep()
        return _exact(value) if type(value) is float else value
    if isinstance(value, dict | list) and _may_nest_deeper(data) and _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    if isinstance(data, bytes):
        suspect = written.count(b":") != data.count(b":") or b"\\u003" in data
    else:
        suspect = written.count(b":") != data.count(":") or "\\u003" in data
    if suspect:
        _refuse_duplicate_keys(data)
    if not _has_float(value):
        return value
    text = data.decode() if isinstance(data, bytes) else data  # UTF-8: orjson checked it
    return _EXACT.decode(text)


def _exact(number: float) -> decimal.Decimal:
    return decimal.Decimal(orjson.dumps(number).decode())


def _exact_numbers(value: Any) -> bool:
    """Replace, in place, each double within an orjson-parsed value of a text orjson wrote
    by the Decimal its text spells; True (and stop) when it nests deeper than MAX_DEPTH."""
    stack = [(value, 1)] if type(value) is dict or type(value) is list else []
    while stack:
        container, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for key, item in container.items() if type(container) is dict else enumerate(container):
            kind = type(item)
            if kind is float:
                container[key] = _exact(item)  # a value replaced: the dict keeps its size
            elif kind is dict or kind is list:
                stack.append((item, depth + 1))
    return False


# Duplicate keys, found without a second parse. orjson keeps the last of two equal keys,
# so what it parsed holds one key fewer than the text for each duplicate. Every colon of a
# JSON text is a key's separator or a character of a string, and orjson writes each string
# with its colons as they are: the parsed value written again (in C, a fraction of the
# parse) has as many colons as the text unless a key came twice, or the text spelled a
# colon as an escape (\u003a, which the text does not count; any \u003 escape is taken for
# one). Either way the text is then parsed again, slowly, to name the key.


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return found


_PAIRS = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _refuse_duplicate_keys(data: bytes | str) -> None:
    _PAIRS.decode(data.decode() if isinstance(data, bytes) else data)


def _has_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    # A plain loop over exact types (what orjson makes): a third of the cost of a generator
    # with isinstance, on the scheduler's every answer from the API.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            return True
        for child in container.values() if type(container) is dict else container:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return False


# JSON encoded already, embedded as it is in what ``dumps`` encodes.
Fragment = orjson.Fragment
