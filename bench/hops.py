"""Where the time goes: each hop's histogram, read from the services' ``/metrics`` before and
after a phase, and its p50 and p99 over that phase alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

# (histogram, the service exposing it, what the report calls it), in the order of the flow.
HOPS: tuple[tuple[str, str, str], ...] = (
    ("fluxo_scheduler_batch_duration_seconds", "scheduler", "scheduler → API batch round trip"),
    ("fluxo_api_persist_duration_seconds", "api", "API persist transaction"),
    ("fluxo_api_outbox_publish_duration_seconds", "api", "relay publish round"),
    ("fluxo_end_to_end_latency_seconds", "api", "end to end (source record → event acked)"),
)

# Cumulative counts by upper bound (``le``), +Inf included.
Buckets = dict[float, float]


@dataclass(frozen=True)
class Hop:
    name: str
    metric: str
    observations: int
    p50_ms: float | None
    p99_ms: float | None


def parse_buckets(text: str) -> dict[str, Buckets]:
    """The cumulative buckets of every histogram in an exposition, label sets added up."""
    found: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = found.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return found


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # past the last finite bucket: its upper bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


def difference(after: Buckets, before: Buckets) -> Buckets:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def hops(
    before: Mapping[str, Mapping[str, Buckets]], after: Mapping[str, Mapping[str, Buckets]]
) -> list[Hop]:
    """Each hop over the interval between two readings (by service, then histogram)."""
    found: list[Hop] = []
    for metric, service, name in HOPS:
        end = after.get(service, {}).get(metric)
        if end is None:
            continue
        buckets = difference(dict(end), dict(before.get(service, {}).get(metric, {})))
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        found.append(
            Hop(
                name=name,
                metric=metric,
                observations=round(buckets.get(math.inf, 0.0)),
                p50_ms=None if p50 is None else round(p50 * 1000, 1),
                p99_ms=None if p99 is None else round(p99 * 1000, 1),
            )
        )
    return found


async def read(urls: Mapping[str, str]) -> dict[str, dict[str, Buckets]]:
    """The histograms of each service (by name), from ``<url>/metrics``."""
    readings: dict[str, dict[str, Buckets]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for service, url in urls.items():
            async with session.get(url + "/metrics") as response:
                response.raise_for_status()
                readings[service] = parse_buckets(await response.text())
    return readings


def table_rows(phase_name: str, found: Sequence[Hop]) -> list[list[str]]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    return [
        [phase_name, hop.name, f"{hop.observations:,}", ms(hop.p50_ms), ms(hop.p99_ms)]
        for hop in found
    ]
