"""The services' logs as an operator reads them: both services run as real processes
(``python -m services.<name>``) with ``LOG_FORMAT=json``, on the real broker and database."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.common.config import KafkaConfig

from ..helpers import TopicReader, free_ports, manual_record, produce, topic_settings, unique
from ..reliability.harness import SETTINGS, ServiceProcess

# A token nobody would write by chance: it must appear in no log line.
SECRET_TOKEN = "s3cr3t-" + "9f4c1e7b2d"
TRACE_ID = "6e0c63257de34c926f9efcd03927272e"
CALLER = f"00-{TRACE_ID}-a2fb4a1d1a96d312-01"


@dataclass
class Services:
    api: ServiceProcess
    scheduler: ServiceProcess

    def lines(self, name: str) -> list[dict[str, Any]]:
        service = self.api if name == "api" else self.scheduler
        return [json.loads(line) for line in service.log_text().splitlines() if line.strip()]


@pytest.fixture
async def services(tmp_path: Path, kafka: KafkaConfig, database: str) -> AsyncIterator[Services]:
    api_port, scheduler_port = free_ports(), free_ports()
    env = {
        **os.environ,
        **SETTINGS,
        "API_TOKEN": SECRET_TOKEN,
        "API_PORT": str(api_port),
        "SCHEDULER_PORT": str(scheduler_port),
        "API_URL": f"http://127.0.0.1:{api_port}",
        "DATABASE_URL": database,
        **topic_settings(kafka),
        "KAFKA_CONSUMER_GROUP": unique("group"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }
    async with aiohttp.ClientSession() as http:
        api = ServiceProcess("api", api_port, env, tmp_path, http)
        scheduler = ServiceProcess("scheduler", scheduler_port, env, tmp_path, http)
        try:
            api.start()
            await api.ready()
            scheduler.start()
            await scheduler.ready()
            yield Services(api, scheduler)
        finally:
            api.discard()
            scheduler.discard()


async def test_one_records_trace_id_is_in_both_topics_and_both_services_logs_and_no_token_is(
    services: Services, kafka: KafkaConfig
) -> None:
    http = services.api.http
    record = manual_record(unique("p"))
    headers = {"Authorization": f"Bearer {SECRET_TOKEN}", "traceparent": CALLER}
    async with http.post(services.api.url + "/produto/manual", json=record, headers=headers) as r:
        assert r.status == 202, await r.text()
        assert r.headers["X-Trace-Id"] == TRACE_ID
    # Poison (it gets a trace started for it); refused tokens (logged nowhere either).
    await produce(kafka.topic_cadastro, [(b"poison", b"{not json")])
    for url in (services.api.url + "/produtos", services.scheduler.url + "/status"):
        async with http.get(url, headers={"Authorization": f"Bearer {SECRET_TOKEN}x"}) as r:
            assert r.status == 401
    async with TopicReader(kafka.topic_cadastro) as entry:
        source = next(rec for rec in await entry.read(2) if rec.key == record["productId"].encode())
    async with TopicReader(kafka.topic_persistidos) as persisted:
        event = (await persisted.read(1))[0]
    async with TopicReader(kafka.topic_dlq) as dlq:
        dead = (await dlq.read(1))[0]
    await services.scheduler.terminate()
    await services.api.terminate()

    # The record's trace id: on cadastro-produtos, on produtos-persistidos ...
    for carried in (source, event):
        assert dict(carried.headers)["traceparent"].decode().split("-")[1] == TRACE_ID
    # ... and in both services' logs, as a field of JSON lines.
    api_lines, scheduler_lines = services.lines("api"), services.lines("scheduler")
    for lines in (api_lines, scheduler_lines):
        assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    api_traced = [line for line in api_lines if line.get("trace_id") == TRACE_ID]
    scheduler_traced = [line for line in scheduler_lines if line.get("trace_id") == TRACE_ID]
    assert any("produced product" in line["message"] for line in api_traced), api_traced
    assert any(line["level"] == "DEBUG" for line in api_traced), api_traced  # its batch item
    assert scheduler_traced, "no scheduler line carries the record's trace id"
    assert all(line["key"] == record["productId"] for line in scheduler_traced)
    # The dead letter: logged with the trace started for it, which its DLQ record carries.
    dlq_trace = dict(dead.headers)["traceparent"].decode().split("-")[1]
    assert any(
        line["level"] == "WARNING" and line.get("trace_id") == dlq_trace for line in scheduler_lines
    )
    # At INFO, one line per batch at most: every INFO line of the consumer about records
    # is a batch line.
    consumer_info = [
        line
        for line in scheduler_lines
        if line["logger"] == "services.scheduler.consumer"
        and line["level"] == "INFO"
        and "trace_id" in line
    ]
    assert consumer_info and all(line["message"].startswith("batch of") for line in consumer_info)
    # No token, no database password in any line.
    for name in ("api", "scheduler"):
        service = services.api if name == "api" else services.scheduler
        text = service.log_text()
        assert SECRET_TOKEN not in text, f"the token is in the log of {name}"
        assert "fluxo:fluxo@" not in text, f"the database password is in the log of {name}"
