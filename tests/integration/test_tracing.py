"""One trace per record, across both services, on the real broker and database.

With the OpenTelemetry SDK, spans go to an in-memory exporter: the produce span continues
the caller's trace, and the scheduler's batch, the API's persist and the relay's publish
spans each link to the trace of the record.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from services.common.config import KafkaConfig
from services.common.tracing import Tracing

from ..helpers import TopicReader, auth, encode, eventually, manual_record, produce, unique

Client = TestClient[web.Request, web.Application]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    """Both services of this module trace into ``exporter`` (conftest's api and scheduler)."""
    provider = SdkTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider)


def linked_to(span: ReadableSpan, trace_id: str) -> bool:
    return any(format_trace_id(link.context.trace_id) == trace_id for link in span.links)


async def test_a_records_trace_goes_from_the_caller_to_produtos_persistidos(
    api: Client, scheduler: Client, kafka: KafkaConfig, exporter: InMemorySpanExporter
) -> None:
    record = manual_record(unique("p"))

    response = await api.post(
        "/produto/manual", json=record, headers={**auth(), "traceparent": CALLER}
    )

    assert response.status == 202, await response.text()
    assert response.headers["X-Trace-Id"] == TRACE_ID
    async with TopicReader(kafka.topic_cadastro) as entry:
        source = (await entry.read(1))[0]
    async with TopicReader(kafka.topic_persistidos) as persisted:
        event = (await persisted.read(1))[0]
    for carried in (source, event):
        traceparent = dict(carried.headers)["traceparent"].decode()
        assert traceparent.split("-")[1] == TRACE_ID, carried

    async def linked() -> list[ReadableSpan] | None:
        spans = exporter.get_finished_spans()
        names = {span.name for span in spans if linked_to(span, TRACE_ID)}
        wanted = {"scheduler batch", "persist", f"publish {kafka.topic_persistidos}"}
        return list(spans) if wanted <= names else None

    spans = await eventually(linked, within=30, what="batch, persist and publish spans linked")
    produce = [s for s in spans if s.name == f"produce {kafka.topic_cadastro}"]
    assert len(produce) == 1
    assert produce[0].kind == SpanKind.PRODUCER
    assert format_trace_id(produce[0].context.trace_id) == TRACE_ID
    server = [s for s in spans if s.name == "POST /produto/manual"]
    assert len(server) == 1
    assert server[0].kind == SpanKind.SERVER
    assert server[0].parent is not None
    assert server[0].parent.span_id == int(CALLER.split("-")[2], 16)  # the caller's span
    assert produce[0].parent is not None
    assert produce[0].parent.span_id == server[0].context.span_id
    # The record on cadastro-produtos carries the produce span itself.
    entry_header = dict(source.headers)["traceparent"].decode()
    assert int(entry_header.split("-")[2], 16) == produce[0].context.span_id
    by_name = {s.name: s for s in spans if linked_to(s, TRACE_ID)}
    assert by_name["scheduler batch"].kind == SpanKind.CONSUMER
    assert by_name[f"publish {kafka.topic_persistidos}"].kind == SpanKind.PRODUCER
    # The API's persist span continues the scheduler's batch request.
    persist = by_name["persist"]
    assert persist.context.trace_id == by_name["scheduler batch"].context.trace_id


async def test_a_record_produced_without_traceparent_gets_a_trace_of_its_own(
    scheduler: Client, kafka: KafkaConfig, exporter: InMemorySpanExporter
) -> None:
    await produce(kafka.topic_cadastro, [(b"k", encode(manual_record(unique("p"))))])

    async with TopicReader(kafka.topic_persistidos) as persisted:
        event = (await persisted.read(1))[0]
    trace_id = dict(event.headers)["traceparent"].decode().split("-")[1]
    assert int(trace_id, 16) != 0

    async def linked() -> bool:
        return any(
            span.name == "scheduler batch" and linked_to(span, trace_id)
            for span in exporter.get_finished_spans()
        )

    await eventually(linked, within=30, what="the batch span linked to the started trace")


async def test_an_invalid_traceparent_starts_a_new_trace(api: Client) -> None:

    response = await api.get("/health", headers={"traceparent": "00-not-a-trace-01"})

    assert response.status == 200
    assert len(response.headers["X-Trace-Id"]) == 32
    assert response.headers["X-Trace-Id"] != "0" * 32
