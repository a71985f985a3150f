"""The metrics of both services: names, types and the HTTP series by route template."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from services.common.metrics import ApiMetrics, HttpMetrics, SchedulerMetrics, new_registry

# What the process and GC collectors add; everything else is ours and named fluxo_*.
DEFAULT_PREFIXES = ("process_", "python_")


def families(metrics: HttpMetrics) -> dict[str, str]:
    text = generate_latest(metrics.registry).decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_every_metric_of_ours_is_prefixed_fluxo_and_counters_end_in_total() -> None:
    for metrics in (ApiMetrics(), SchedulerMetrics()):
        found = families(metrics)
        ours = {name: kind for name, kind in found.items() if not name.startswith(DEFAULT_PREFIXES)}
        assert ours, "no metric of ours"
        assert all(name.startswith("fluxo_") for name in ours), ours
        assert "process_cpu_seconds" in found  # the process collector
        assert "python_gc_objects_collected" in found  # the GC collector
        for name, kind in ours.items():
            if kind == "histogram":
                assert name.endswith("_seconds"), name


def test_the_contract_names_exist_with_their_types() -> None:
    api = families(ApiMetrics())
    scheduler = families(SchedulerMetrics())

    assert api["fluxo_end_to_end_latency_seconds"] == "histogram"
    assert api["fluxo_api_outbox_backlog"] == "gauge"
    assert api["fluxo_api_outbox_oldest_age_seconds"] == "gauge"
    assert api["fluxo_api_persist_duration_seconds"] == "histogram"
    assert api["fluxo_api_outbox_publish_duration_seconds"] == "histogram"
    assert api["fluxo_api_database_pool_in_use"] == "gauge"
    assert api["fluxo_http_request_duration_seconds"] == "histogram"
    assert scheduler["fluxo_scheduler_consumer_lag"] == "gauge"
    assert scheduler["fluxo_scheduler_batch_duration_seconds"] == "histogram"
    assert scheduler["fluxo_scheduler_dead_lettered"] == "counter"


def test_each_application_has_its_own_registry() -> None:
    one, two = SchedulerMetrics(), SchedulerMetrics()
    one.records.inc(5)

    assert one.sample("fluxo_scheduler_records_total") == 5
    assert two.sample("fluxo_scheduler_records_total") == 0
    assert new_registry() is not new_registry()


def test_dead_letter_stages_exist_at_zero_before_the_first_dead_letter() -> None:
    metrics = SchedulerMetrics()

    assert (
        metrics.registry.get_sample_value(
            "fluxo_scheduler_dead_lettered_total", {"stage": "validate"}
        )
        == 0
    )
    metrics.dead_lettered.labels("validate").inc()
    metrics.dead_lettered.labels("decode").inc(2)
    assert metrics.counts() == {"records": 0, "persisted": 0, "dead_lettered": 3}


async def test_http_requests_are_counted_by_route_template_never_by_raw_path(
    aiohttp_client: AiohttpClient,
) -> None:
    metrics = HttpMetrics(new_registry())
    app = web.Application(middlewares=[metrics.middleware()])

    async def product(request: web.Request) -> web.Response:
        if request.match_info["id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({})

    app.router.add_get("/produtos/{id}", product)
    app.router.add_get("/metrics", metrics.handler())
    client = await aiohttp_client(app)

    for path in ("/produtos/1", "/produtos/2", "/produtos/missing", "/nowhere/a", "/nowhere/b"):
        await client.get(path)
    for method in ("PROPFIND", "TRACE"):
        await client.request(method, "/produtos/1")
    response = await client.get("/metrics")

    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    routes = {
        (sample.labels["route"], sample.labels["status"])
        for family in text_string_to_metric_families(text)
        if family.name == "fluxo_http_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }
    assert routes == {
        ("/produtos/{id}", "200"),
        ("/produtos/{id}", "404"),
        ("unmatched", "404"),
        ("unmatched", "405"),
    }
    assert (
        metrics.sample(
            "fluxo_http_request_duration_seconds_count",
            route="unmatched",
            method="other",
            status="405",
        )
        == 2
    )
    assert (
        metrics.sample(
            "fluxo_http_request_duration_seconds_count",
            route="/produtos/{id}",
            method="GET",
            status="200",
        )
        == 2
    )
