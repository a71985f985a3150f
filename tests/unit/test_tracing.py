"""Trace context values: what is accepted, carried and started, as W3C Trace Context says."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common.tracing import Trace, Tracing, parse, record_trace, start

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
VALUES = [
    VALID,
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # zero span id
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 with more
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",  # a later version
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",  # short span id
    "not a traceparent",
    "",
]


@pytest.mark.parametrize("value", VALUES)
def test_parse_accepts_exactly_what_the_w3c_propagator_accepts(value: str) -> None:
    extracted = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": value})
    ).get_span_context()

    parsed = parse(value)

    assert (parsed is not None) == extracted.is_valid
    if parsed is not None:
        assert parsed.context.trace_id == extracted.trace_id
        assert parsed.context.span_id == extracted.span_id
        assert parsed.traceparent.startswith("00-")


def test_a_started_trace_is_a_valid_traceparent_with_fresh_ids() -> None:
    first, second = start(), start()

    assert parse(first.traceparent) is not None
    assert first.trace_id != second.trace_id
    assert first.traceparent.endswith("-01")  # sampled, so a recording next hop keeps it


def test_a_kafka_records_header_is_its_trace_and_a_record_without_one_gets_a_new_one() -> None:
    assert record_trace([("origem", b"erp"), ("traceparent", VALID.encode())]).traceparent == VALID
    assert record_trace([]).trace_id != record_trace([]).trace_id
    assert Trace(VALID).kafka_header == ("traceparent", VALID.encode())


async def test_without_the_sdk_a_span_passes_its_parent_on_or_starts_a_trace() -> None:
    tracing = Tracing()
    parent = Trace(VALID)

    with tracing.span("hop", parent=parent) as child:
        assert child is parent
    with tracing.span("hop") as root:
        assert parse(root.traceparent) is not None
    assert tracing.links([VALID]) == []  # nothing is recorded, nothing to link


def test_spans_are_exported_only_when_an_otlp_endpoint_is_set() -> None:
    assert not Tracing.from_environ("api", {}).recording
    assert not Tracing.from_environ("api", {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}).recording

    exporting = Tracing.from_environ("api", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})

    assert exporting.recording
    assert [t.trace_id for t in exporting.links([VALID, "junk", None])] == [Trace(VALID).trace_id]
    exporting.shutdown()  # nothing recorded: nothing to send
