"""Static checks of deploy/observability: Prometheus' config and alert rules through
promtool (Debian's ``prometheus`` package), Grafana's provisioning and dashboard JSON, and
the compose profile ``observability`` that runs them. Grafana cannot run here, so its files
are checked for what Grafana needs; tests/integration/test_prometheus.py runs every
expression against a real Prometheus scraping the services."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import ApiMetrics, SchedulerMetrics

from .helpers import ROOT

OBSERVABILITY = ROOT / "deploy" / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
GRAFANA_DIR = OBSERVABILITY / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "fluxo-dados.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "fluxo-dados.yml"
PROMTOOL = "promtool"
# What Grafana substitutes in a query; a real Prometheus needs a duration there.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
COMPARISON = re.compile(r"^(?P<value>.+?)\s+(?:>|<|==|!=|>=|<=)\s+[\d.]+$", re.DOTALL)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_expressions() -> dict[str, str]:
    """Each panel target's query, as Prometheus would run it, by ``panel / legend``."""
    found: dict[str, str] = {}
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found[f"{panel['title']} / {target['legendFormat']}"] = expr
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def rule_expressions() -> dict[str, str]:
    """Each recording rule's expression, and each alert's value (its expression without the
    final comparison), which has data whether or not the alert fires."""
    found: dict[str, str] = {}
    for rule in rules():
        expr = " ".join(rule["expr"].split())
        if "alert" in rule:
            match = COMPARISON.match(expr)
            assert match, f"alert {rule['alert']}: expected '<value> <comparison> <number>'"
            found[f"alert {rule['alert']}"] = match["value"]
        else:
            found[f"record {rule['record']}"] = expr
    return found


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def our_series() -> set[str]:
    """Every series name the two services expose (histograms with their _bucket etc.)."""
    names: set[str] = set()
    for metrics in (ApiMetrics(), SchedulerMetrics()):
        text = generate_latest(metrics.registry).decode()
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            if family.type == "histogram":  # labelled ones have no sample before the first
                names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def test_promtool_accepts_the_prometheus_config() -> None:
    assert "SUCCESS" in promtool("check", "config", PROMETHEUS_CONFIG.name)


def test_promtool_accepts_the_rules() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES.name)


def test_promtool_rule_tests_pass_with_a_case_for_every_alert() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    tested = {
        case["alertname"]
        for test in load_yaml(RULE_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts >= {
        "FluxoConsumerLagGrowing",
        "FluxoOutboxStale",
        "FluxoDeadLetters",
        "FluxoNoOutboxRelay",
        "FluxoNoWritablePrimary",
    }
    assert alerts <= tested, f"alerts without a firing case: {alerts - tested}"


def test_prometheus_scrapes_both_services_under_their_compose_names() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert jobs["fluxo-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["fluxo-scheduler"]["static_configs"][0]["targets"] == ["scheduler:8010"]


def test_every_metric_the_dashboard_and_rules_read_is_one_the_services_expose() -> None:
    exposed = our_series()
    queries = [*dashboard_expressions().values(), *rule_expressions().values()]
    for query in queries:
        for name in re.findall(r"\bfluxo_[a-z_]+", query):
            assert name in exposed, f"{name} (in {query!r}) is exposed by neither service"


def test_the_dashboard_has_unique_panels_on_the_provisioned_datasource() -> None:
    board = dashboard()
    datasource = load_yaml(DATASOURCES)["datasources"][0]
    ids = [panel["id"] for panel in board["panels"]]

    assert board["uid"] == "fluxo-dados"
    assert len(ids) == len(set(ids))
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    for panel in board["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for subject in ("throughput", "p50", "p99", "lag", "outbox backlog", "oldest", "dead letters"):
        assert subject in titles, f"no panel about {subject}"
    assert "http errors" in titles


def test_the_observability_profile_mounts_these_files() -> None:
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]
    prometheus, grafana = compose["prometheus"], compose["grafana"]
    provider = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]

    assert prometheus["profiles"] == ["observability"]
    assert grafana["profiles"] == ["observability"]
    assert "./deploy/observability/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/observability/grafana/dashboards"] == provider["options"]["path"]
    for volume in [*prometheus["volumes"], *grafana["volumes"]]:
        source = volume.split(":", 1)[0]
        assert not source.startswith("./") or (ROOT / source).exists(), volume
