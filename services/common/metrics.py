"""Every Prometheus metric of fluxo-dados, one registry per application.

Names follow Prometheus conventions: prefixed ``fluxo_``, base units (``_seconds``),
counters ending in ``_total``. Each metric is declared here and observed where its event
happens: the consumer (scheduler), the API client (batch round trip), the handlers
(persist transaction), the outbox relay (publish, end-to-end latency) and the HTTP
middleware below. docs/operations.md lists them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from .http import Handler, route_template

# Seconds. Finer than the client's defaults where this pipeline's hops fall (a few ms to a
# few hundred), so that the per-hop p50/p99 interpolated within a bucket say something;
# end to end also reaches minutes (a backlog draining).
HOP_BUCKETS = (
    *(0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075),
    *(0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 30),
)
END_TO_END_BUCKETS = (
    *(0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5),
    *(0.75, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
# Any other method a client sends is counted as "other": no client creates new series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEAD_LETTER_STAGES = ("decode", "validate", "api")
CONSUMER_STATES = ("starting", "running", "paused", "retrying", "stalled", "restarting", "stopped")


def new_registry() -> CollectorRegistry:
    """A registry with the process (CPU, memory, file descriptors), GC and platform metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


class HttpMetrics:
    """Requests of one service, by route template (never the raw path), method and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_duration = self._histogram(
            "fluxo_http_request_duration_seconds",
            "HTTP requests served, by route template, method and status, in seconds.",
            ["route", "method", "status"],
        )

    def _counter(
        self, name: str, documentation: str, label: str = "", values: Iterable[str] = ()
    ) -> Counter:
        """A counter, by ``label`` if given; the series of ``values`` exist (at 0) from the
        start, so that a rate over them is defined before their first event."""
        counter = Counter(name, documentation, [label] if label else [], registry=self.registry)
        for value in values:
            counter.labels(value)
        return counter

    def _histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = HOP_BUCKETS,
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def middleware(self) -> Middleware:
        @web.middleware
        async def http_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                method = request.method if request.method in HTTP_METHODS else "other"
                self.request_duration.labels(route_template(request), method, str(status)).observe(
                    time.perf_counter() - started
                )

        return http_metrics

    def handler(self) -> Handler:
        async def metrics(request: web.Request) -> web.Response:
            response = web.Response(body=generate_latest(self.registry))
            response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            response.charset = "utf-8"
            return response

        return metrics

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one series (0 when it has none yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0


class ApiMetrics(HttpMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or new_registry())
        self.manual_records = self._counter(
            "fluxo_api_manual_records", "Records produced by POST /produto/manual."
        )
        self.persisted_records = self._counter(
            "fluxo_api_persisted_records",
            "Records persisted, by outcome (created, updated, unchanged, rejected).",
            "outcome",
            ("created", "updated", "unchanged", "rejected"),
        )
        self.persist_duration = self._histogram(
            "fluxo_api_persist_duration_seconds",
            "The persist transaction (upsert products, write outbox) of one request, in seconds.",
        )
        self.outbox_published = self._counter(
            "fluxo_api_outbox_published", "Events published on produtos-persistidos."
        )
        self.outbox_publish_duration = self._histogram(
            "fluxo_api_outbox_publish_duration_seconds",
            "One relay round: from sending its events to the broker's last acknowledgement.",
        )
        self.end_to_end_latency = self._histogram(
            "fluxo_end_to_end_latency_seconds",
            "From the source record's Kafka timestamp to the broker's acknowledgement of its "
            "event on produtos-persistidos, in seconds.",
            buckets=END_TO_END_BUCKETS,
        )
        self.outbox_backlog = self._gauge(
            "fluxo_api_outbox_backlog", "Outbox rows not yet published."
        )
        self.outbox_oldest_age = self._gauge(
            "fluxo_api_outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published, in seconds (0 when empty).",
        )
        self.outbox_relay_active = self._gauge(
            "fluxo_api_outbox_relay_active",
            "1 while this replica publishes at least one outbox relay slot.",
        )
        self.outbox_relay_slots = self._gauge(
            "fluxo_api_outbox_relay_slots", "Outbox relay slots this replica publishes."
        )
        self.database_pool_in_use = self._gauge(
            "fluxo_api_database_pool_in_use", "PostgreSQL pool connections lent out."
        )
        self.database_pool_size = self._gauge(
            "fluxo_api_database_pool_size", "PostgreSQL pool connections open."
        )
        self.database_primary_changes = self._counter(
            "fluxo_api_database_primary_changes",
            "Times this replica's writes moved to another PostgreSQL server (a failover).",
        )
        self.database_writable = self._gauge(
            "fluxo_api_database_writable",
            "1 while the PostgreSQL server this replica last reached takes writes.",
        )

    def watch_pool(
        self, in_use: Callable[[], float], size: Callable[[], float], writable: Callable[[], float]
    ) -> None:
        """Read the pool's numbers at each scrape."""
        self.database_pool_in_use.set_function(in_use)
        self.database_pool_size.set_function(size)
        self.database_writable.set_function(writable)


class SchedulerMetrics(HttpMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or new_registry())
        self.records = self._counter(
            "fluxo_scheduler_records", "Records fetched from the entry topic."
        )
        self.persisted = self._counter("fluxo_scheduler_persisted", "Records the API acknowledged.")
        self.dead_lettered = self._counter(
            "fluxo_scheduler_dead_lettered",
            "Records sent to the dead-letter topic, by stage (decode, validate, api).",
            "stage",
            DEAD_LETTER_STAGES,
        )
        self.retries = self._counter(
            "fluxo_scheduler_retries",
            "Retried failures, by operation (persist, dead-letter).",
            "operation",
            ("persist", "dead-letter"),
        )
        self.redrives = self._counter(
            "fluxo_scheduler_redrives",
            "Dead-letter re-drives asked for, by outcome: produced, refused (still invalid), "
            "stale (older than the product's row), already (re-driven by another request).",
            "outcome",
            ("produced", "refused", "stale", "already"),
        )
        self.batch_duration = self._histogram(
            "fluxo_scheduler_batch_duration_seconds",
            "Round trip of one batch request to the API, in seconds.",
        )
        self.consumer_lag = self._gauge(
            "fluxo_scheduler_consumer_lag",
            "Records on the broker past the group's committed offset, per assigned partition.",
            ["topic", "partition"],
        )
        self.consumer_state = Enum(
            "fluxo_scheduler_consumer_state",
            "State of the consumer.",
            states=list(CONSUMER_STATES),
            registry=self.registry,
        )

    def counts(self) -> dict[str, int]:
        """Records fetched, persisted and dead-lettered (all stages) by this process."""
        return {
            "records": total(self.records),
            "persisted": total(self.persisted),
            "dead_lettered": total(self.dead_lettered),
        }


def total(counter: Counter) -> int:
    """A counter's value, added up over its label sets (this metric alone is collected,
    not the whole registry with its process and GC collectors)."""
    return round(
        sum(
            sample.value
            for family in counter.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
    )
