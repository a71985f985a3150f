"""Counters and gauges in the Prometheus text exposition format."""

from __future__ import annotations

import re

from services.common.http import Metrics

# A sample line: name, optional {label="value",...}, a value Prometheus can parse.
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})?'
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)$"
)
HELP = re.compile(r"^# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$")
TYPE = re.compile(r"^# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<kind>counter|gauge)$")


def scheduler_metrics() -> Metrics:
    metrics = Metrics("fluxo_scheduler")
    metrics.counter("records_total", "Records fetched from Kafka.")
    metrics.counter("dead_lettered_total", "Records sent to the dead-letter topic, by stage.")
    metrics.gauge("assigned_partitions", "Partitions assigned to this instance.")
    return metrics


def assert_valid_exposition(text: str) -> None:
    """Every line is HELP, TYPE or a sample, and every sample's metric was declared first."""
    assert text.endswith("\n")
    helped: set[str] = set()
    typed: set[str] = set()
    for line in text.splitlines():
        if match := HELP.match(line):
            helped.add(match["name"])
        elif match := TYPE.match(line):
            assert match["name"] not in typed, f"second TYPE line: {line!r}"
            typed.add(match["name"])
        else:
            match = SAMPLE.match(line)
            assert match, f"not a valid sample line: {line!r}"
            assert match["name"] in helped & typed, f"undeclared metric: {line!r}"


def test_metrics_render_help_type_and_labelled_samples() -> None:
    metrics = scheduler_metrics()
    metrics.inc("records_total", 3)
    metrics.inc("dead_lettered_total", stage="decode")
    metrics.inc("dead_lettered_total", stage="validate")
    metrics.inc("dead_lettered_total", stage="decode")
    metrics.set("assigned_partitions", 6)

    assert metrics.render() == (
        "# HELP fluxo_scheduler_records_total Records fetched from Kafka.\n"
        "# TYPE fluxo_scheduler_records_total counter\n"
        "fluxo_scheduler_records_total 3\n"
        "# HELP fluxo_scheduler_dead_lettered_total Records sent to the dead-letter topic, "
        "by stage.\n"
        "# TYPE fluxo_scheduler_dead_lettered_total counter\n"
        'fluxo_scheduler_dead_lettered_total{stage="decode"} 2\n'
        'fluxo_scheduler_dead_lettered_total{stage="validate"} 1\n'
        "# HELP fluxo_scheduler_assigned_partitions Partitions assigned to this instance.\n"
        "# TYPE fluxo_scheduler_assigned_partitions gauge\n"
        "fluxo_scheduler_assigned_partitions 6\n"
    )
    assert_valid_exposition(metrics.render())


def test_a_declared_metric_without_samples_still_renders_its_help_and_type() -> None:
    text = scheduler_metrics().render()

    assert "# TYPE fluxo_scheduler_records_total counter\n" in text
    assert_valid_exposition(text)


def test_counters_add_up_per_label_set() -> None:
    metrics = scheduler_metrics()
    for _ in range(7):
        metrics.inc("records_total")
    metrics.inc("records_total", 500)
    for stage in ["decode", "validate", "decode", "api", "decode"]:
        metrics.inc("dead_lettered_total", stage=stage)

    assert metrics.value("records_total") == 507
    assert metrics.value("dead_lettered_total", stage="decode") == 3
    assert metrics.value("dead_lettered_total", stage="validate") == 1
    assert metrics.value("dead_lettered_total", stage="api") == 1
    assert metrics.value("dead_lettered_total", stage="never") == 0
    assert "fluxo_scheduler_records_total 507\n" in metrics.render()


def test_labels_are_one_series_whatever_order_they_are_given_in() -> None:
    metrics = Metrics("fluxo_api")
    metrics.counter("requests_total", "Requests, by method and status.")
    metrics.inc("requests_total", method="POST", status="202")
    metrics.inc("requests_total", status="202", method="POST")

    assert metrics.value("requests_total", status="202", method="POST") == 2
    assert 'fluxo_api_requests_total{method="POST",status="202"} 2\n' in metrics.render()
    assert_valid_exposition(metrics.render())


def test_a_gauge_is_set_not_added() -> None:
    metrics = scheduler_metrics()
    metrics.set("assigned_partitions", 6)
    metrics.set("assigned_partitions", 3)

    assert metrics.value("assigned_partitions") == 3
    assert "fluxo_scheduler_assigned_partitions 3\n" in metrics.render()


def test_fractional_values_render_as_numbers() -> None:
    metrics = scheduler_metrics()
    metrics.set("assigned_partitions", 0.5)

    assert "fluxo_scheduler_assigned_partitions 0.5\n" in metrics.render()
    assert_valid_exposition(metrics.render())


def test_a_counter_past_a_million_renders_its_exact_value() -> None:
    metrics = scheduler_metrics()
    metrics.inc("records_total", 1_234_567)

    assert "fluxo_scheduler_records_total 1234567\n" in metrics.render()
