"""The compose stack under a real Docker engine, as docs/docker.md tells users to run it.

`make compose-up` brings it up (stand-in images where no registry answers), on host ports of
its own (API_HOST_PORT and friends), so that a running `make up` is never disturbed. The
tests below run in file order on that one stack; the last one takes it down.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from tests.doc_blocks import command
from tests.helpers import TopicReader, eventually, manual_record

from .docker import (
    OWNER,
    PROJECT,
    ROOT,
    TIMINGS,
    claim_project,
    port_in_use,
    project_objects,
    run,
)

SERVICES = ("kafka", "postgres", "api", "scheduler")
API_PORT, SCHEDULER_PORT, KAFKA_PORT = 28000, 28010, 29094
ENV = {
    "API_HOST_PORT": str(API_PORT),
    "SCHEDULER_HOST_PORT": str(SCHEDULER_PORT),
    "KAFKA_HOST_PORT": str(KAFKA_PORT),
    "WEBKAFKA_HOST_PORT": "29030",
}
TOKEN = "local-dev-token"  # the compose file's default API_TOKEN, which the docs use

pytestmark = pytest.mark.timeout(600)


def compose(*args: str, timeout: float = 300) -> str:
    return run("docker", "compose", *args, env=ENV, timeout=timeout, input="").stdout


@pytest.fixture(scope="module", autouse=True)
def stack() -> Iterator[None]:
    claim_project()
    busy = [port for port in (API_PORT, SCHEDULER_PORT, KAFKA_PORT) if port_in_use(port)]
    assert not busy, f"host ports {busy} are in use; the compose test publishes on them"
    OWNER.parent.mkdir(exist_ok=True)
    OWNER.write_text("the compose test owns the fluxo-dados project while this file exists\n")
    start = time.monotonic()
    try:
        out = run(str(ROOT / "scripts" / "docker.sh"), "compose-up", env=ENV, timeout=540).stdout
        TIMINGS.append(f"compose: make compose-up took {time.monotonic() - start:.0f} s")
        steps = [line for line in out.splitlines() if re.search(r" (built|imported) ", line)]
        TIMINGS.extend(f"compose: {line}" for line in steps)
        base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
        images = [base.group(1)] if base else []
        images += compose("config", "--images", *SERVICES).split()
        for image in images:
            size = run("docker", "image", "inspect", image, "--format", "{{.Size}}").stdout
            TIMINGS.append(f"compose: image {image}: {int(size) / 1e6:.0f} MB")
        yield
    finally:
        if project_objects():
            compose("down", "-v")
        OWNER.unlink()


def test_every_service_is_healthy_on_the_project_network() -> None:
    states = [json.loads(line) for line in compose("ps", "--format", "json").splitlines()]
    health = {state["Service"]: state["Health"] for state in states}
    assert health == dict.fromkeys(SERVICES, "healthy")
    for service in SERVICES:
        mode = run("docker", "inspect", f"{PROJECT}-{service}-1", "--format",
                   "{{.HostConfig.NetworkMode}}").stdout.strip()  # fmt: skip
        assert mode == f"{PROJECT}_default", f"{service} runs on network {mode}"


def test_api_and_scheduler_run_as_the_dockerfiles_user() -> None:
    user = re.search(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user, "the Dockerfile declares no USER"
    uid = user.group(1).split(":")[0]
    assert uid not in {"0", "root"}
    for service in ("api", "scheduler"):
        assert compose("exec", "-T", service, "id", "-u").strip() == uid


async def test_readme_curl_answers_202_and_the_row_is_in_postgres() -> None:
    curl = command("curl -i -X POST http://localhost:8000/produto/manual")
    curl = curl.replace("localhost:8000", f"localhost:{API_PORT}")
    status = run("bash", "-c", f"{curl} -s -o /dev/null -w '%{{http_code}}'").stdout
    assert status == "202"

    psql = command("docker compose exec postgres psql")

    async def row() -> bool:
        out = run("bash", "-c", psql, env=ENV).stdout
        return "12369" in out and "Nome do Produto" in out

    await eventually(row, within=30, every=1, what="product 12369 in products")


async def test_the_event_is_read_on_produtos_persistidos_through_the_host_listener() -> None:
    bootstrap = f"localhost:{KAFKA_PORT}"
    async with TopicReader("produtos-persistidos", 6, bootstrap=bootstrap) as reader:
        records = await reader.read_until(
            lambda rs: any(r.value and json.loads(r.value)["id"] == "12369" for r in rs),
            within=30,
            what="product 12369 on produtos-persistidos",
        )
    assert records


def container_log(service: str, *options: str) -> str:
    result = run("docker", "logs", *options, f"{PROJECT}-{service}-1")
    return result.stdout + result.stderr


def test_api_log_shows_the_request() -> None:
    # One JSON line at INFO for the README's record (access lines are DEBUG).
    lines = [json.loads(line) for line in container_log("api").splitlines() if line.startswith("{")]
    produced = [
        line
        for line in lines
        if line.get("key") == "12369" and line["message"].startswith("produced product 12369")
    ]
    assert produced, "no log line of the README's POST /produto/manual in docker logs"
    assert produced[0]["topic"] == "cadastro-produtos" and produced[0]["trace_id"]


async def test_swagger_answers_on_both_services() -> None:
    async with aiohttp.ClientSession() as session:
        for port in (API_PORT, SCHEDULER_PORT):
            async with session.get(f"http://localhost:{port}/docs") as response:
                assert response.status == 200, f":{port}/docs answered {response.status}"
                assert "swagger" in (await response.text()).lower()


async def test_500_records_around_a_scheduler_restart_each_land_once() -> None:
    run_id = uuid.uuid4().hex[:8]
    ids = [f"restart-{run_id}-{i}" for i in range(500)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limit = asyncio.Semaphore(20)

    async def post(session: aiohttp.ClientSession, product_id: str) -> None:
        async with (
            limit,
            session.post(
                f"http://localhost:{API_PORT}/produto/manual",
                json=manual_record(product_id),
                headers=headers,
            ) as response,
        ):
            assert response.status == 202, await response.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(post(session, i) for i in ids[:250]))
        restart = asyncio.create_task(asyncio.to_thread(compose, "restart", "scheduler"))
        await asyncio.gather(*(post(session, i) for i in ids[250:]))
        await restart

    query = f"SELECT count(*), count(DISTINCT id) FROM products WHERE id LIKE 'restart-{run_id}-%'"

    async def all_there() -> str | None:
        out = compose("exec", "-T", "postgres", "psql", "-U", "fluxo", "fluxo", "-At", "-c", query)
        return out.strip() if out.strip() == "500|500" else None

    await eventually(all_there, within=120, every=1, what="the 500 records in products")


def test_api_exits_cleanly_on_sigterm_within_its_timeout() -> None:
    start = time.monotonic()
    compose("stop", "api", timeout=120)
    took = time.monotonic() - start
    grace = 30  # stop_grace_period of api in docker-compose.yml
    assert took < grace, f"docker compose stop api took {took:.0f} s (SIGKILL after {grace} s)"
    state = run("docker", "inspect", f"{PROJECT}-api-1", "--format", "{{.State.ExitCode}}").stdout
    assert state.strip() == "0"
    log = container_log("api", "--tail", "20")
    assert "shutting down services.api" in log
    assert "services.api stopped" in log
    TIMINGS.append(f"compose: docker compose stop api took {took:.1f} s")


def test_down_v_leaves_no_container_network_or_volume() -> None:
    compose("down", "-v")
    assert project_objects() == []


def test_a_project_it_did_not_create_is_never_taken_over() -> None:
    volume = f"{PROJECT}_user-data-{uuid.uuid4().hex[:6]}"
    run("docker", "volume", "create", "--label", f"com.docker.compose.project={PROJECT}", volume)
    try:
        OWNER.unlink()
        with pytest.raises(pytest.fail.Exception, match="did not create"):
            claim_project()
        assert f"volume {volume}" in project_objects()
    finally:
        OWNER.write_text("restored for the fixture's teardown\n")
        run("docker", "volume", "rm", volume)
