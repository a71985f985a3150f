"""Log lines: JSON with fields, or readable text, both with the trace id of a record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from services.common.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_trace_id_and_the_records_place_as_fields() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    logging.getLogger("services.test").info(
        "dead-lettered %s", "Açúcar", extra={"trace_id": "ab" * 16, "partition": 3}
    )
    logging.getLogger("services.test").debug("not at INFO")

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["message"] == "dead-lettered Açúcar"
    assert (line["level"], line["logger"]) == ("INFO", "services.test")
    assert (line["trace_id"], line["partition"]) == ("ab" * 16, 3)
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_end_with_the_trace_id_when_there_is_one() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "text", out)

    logging.getLogger("services.test").info("batch", extra={"trace_id": "cd" * 16})
    logging.getLogger("services.test").info("started")

    first, second = out.getvalue().splitlines()
    assert first.endswith(" INFO services.test batch trace_id=" + "cd" * 16)
    assert second.endswith(" INFO services.test started")


@pytest.mark.usefixtures("restore_logging")
def test_access_lines_are_debug_only_so_info_has_one_line_per_batch() -> None:
    configure_logging("INFO", "text", io.StringIO())
    assert not logging.getLogger("aiohttp.access").isEnabledFor(logging.INFO)

    configure_logging("DEBUG", "text", io.StringIO())
    assert logging.getLogger("aiohttp.access").isEnabledFor(logging.DEBUG)


def test_an_unknown_format_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of text, json"):
        configure_logging("INFO", "xml", io.StringIO())
