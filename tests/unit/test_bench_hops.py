"""The benchmark's per-hop figures: histogram buckets read between two scrapes."""

from __future__ import annotations

import math

from prometheus_client import Histogram, generate_latest

from bench.hops import HOPS, difference, hops, parse_buckets, quantile, table_rows
from services.common.metrics import ApiMetrics, SchedulerMetrics, new_registry


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile() -> None:
    buckets = {0.01: 10.0, 0.05: 90.0, 0.1: 100.0, math.inf: 100.0}

    assert quantile(0.5, buckets) == 0.01 + 0.04 * (50 - 10) / 80
    assert quantile(0.99, buckets) == 0.05 + 0.05 * (99 - 90) / 10
    assert quantile(0.05, buckets) == 0.005  # within the first bucket, from 0


def test_no_observation_has_no_quantile_and_past_the_last_bucket_is_its_bound() -> None:
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == 0.1


def test_buckets_are_read_from_the_exposition_and_label_sets_added_up() -> None:
    registry = new_registry()
    histogram = Histogram("h_seconds", "h", ["route"], buckets=(0.1, 1), registry=registry)
    histogram.labels("/a").observe(0.05)
    histogram.labels("/b").observe(0.5)
    histogram.labels("/b").observe(5)

    buckets = parse_buckets(generate_latest(registry).decode())["h_seconds"]

    assert buckets == {0.1: 1.0, 1.0: 2.0, math.inf: 3.0}


def test_each_hop_covers_only_what_was_observed_between_the_two_readings() -> None:
    api, scheduler = ApiMetrics(), SchedulerMetrics()
    api.end_to_end_latency.observe(5)  # before the phase: left out

    def reading() -> dict[str, dict[str, dict[float, float]]]:
        return {
            "api": parse_buckets(generate_latest(api.registry).decode()),
            "scheduler": parse_buckets(generate_latest(scheduler.registry).decode()),
        }

    before = reading()
    for _ in range(100):
        api.end_to_end_latency.observe(0.03)
        scheduler.batch_duration.observe(0.004)
    found = {hop.metric: hop for hop in hops(before, reading())}

    assert [hop.metric for hop in found.values()] == [metric for metric, _, _ in HOPS]
    end_to_end = found["fluxo_end_to_end_latency_seconds"]
    assert end_to_end.observations == 100
    assert end_to_end.p99_ms is not None and 20 < end_to_end.p99_ms <= 30
    assert found["fluxo_api_persist_duration_seconds"].p50_ms is None
    rows = table_rows("1000/s", list(found.values()))
    assert rows[-1][:3] == ["1000/s", "end to end (source record → event acked)", "100"]
    assert difference({1.0: 5.0}, {1.0: 2.0}) == {1.0: 3.0}
