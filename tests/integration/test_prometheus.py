"""A real Prometheus (Debian's package) scrapes both services while records flow through
the real broker and database: every dashboard query and every rule returns data.

It runs as a process of its own on a free port, with the repository's rules and its scrape
jobs pointed at the test's services, and is stopped at the end: nothing is left running.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.config import KafkaConfig

from ..helpers import auth, encode, eventually, free_ports, manual_record, produce, unique
from ..reliability.harness import tail
from ..test_observability_files import (
    PROMETHEUS_CONFIG,
    RULES,
    dashboard_expressions,
    rule_expressions,
)

Client = TestClient[web.Request, web.Application]

PROMETHEUS = "prometheus"


def address(client: Client) -> str:
    server: TestServer = client.server  # type: ignore[assignment]
    return f"{server.host}:{server.port}"


class Prometheus:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.http.get(self.url + "/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture
async def prometheus(api: Client, scheduler: Client, tmp_path: Path) -> AsyncIterator[Prometheus]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    targets = {"fluxo-api": address(api), "fluxo-scheduler": address(scheduler)}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_ports()
    log = tmp_path / "prometheus.log"
    process = start_prometheus(config_file, tmp_path / "data", port, log)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                assert process.poll() is None, f"prometheus exited:\n{tail(log)}"
                try:
                    async with http.get(url + "/-/ready") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, within=30, what="prometheus ready", context=lambda: tail(log))
            yield Prometheus(url, http)
    finally:
        stop(process)


def start_prometheus(config: Path, data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_every_dashboard_query_and_rule_returns_data_while_records_flow(
    prometheus: Prometheus, api: Client, scheduler: Client, kafka: KafkaConfig
) -> None:
    run = unique("p")
    # Records, a poison one, and refused requests (the HTTP errors panel).
    await produce(kafka.topic_cadastro, [(b"poison", b"{not json")])
    for path in ("/produtos", "/status"):
        client = api if path == "/produtos" else scheduler
        assert (await client.get(path, headers=auth("wrong"))).status == 401

    async def up() -> bool:
        return len(await prometheus.query('up{job=~"fluxo-.*"} == 1')) == 2

    await eventually(up, within=30, what="both services scraped up")
    empty = {**dashboard_expressions(), **rule_expressions()}
    rounds = iter(range(1_000_000))

    async def all_have_data() -> bool:
        # Keep records flowing, so every rate and quantile over the last minute has some.
        burst = next(rounds)
        await produce(
            kafka.topic_cadastro,
            [(b"k", encode(manual_record(f"{run}-{burst}-{i}"))) for i in range(20)],
        )
        for name, expr in list(empty.items()):
            result = await prometheus.query(expr)
            if any(not math.isnan(float(series["value"][1])) for series in result):
                del empty[name]
        return not empty

    await eventually(
        all_have_data,
        within=90,
        every=1,
        what="data for every dashboard query and rule",
        context=lambda: "without data:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items()),
    )
    # The contract's lag gauge: one series per partition, asked of the broker.
    lag = await prometheus.query("fluxo_scheduler_consumer_lag")
    assert {series["metric"]["partition"] for series in lag} == {"0", "1", "2"}
