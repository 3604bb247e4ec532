"""The shipped Prometheus config, alert rules and Grafana dashboard parse, and every
metric they query is one the code exports (a renamed metric would silence an alert)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.devstack.paths import REPO_ROOT
from orchestrator.metrics import metric_names

COMPOSE = REPO_ROOT / "compose"
ALERTS = COMPOSE / "prometheus" / "saga-alerts.yml"
DASHBOARD = COMPOSE / "grafana" / "saga-dashboard.json"
SCRAPE = COMPOSE / "prometheus" / "prometheus.yml"
# series Prometheus itself attaches to every scrape target
BUILTIN = {"up"}
METRIC = re.compile(r"\b((?:saga|process)_[a-z0-9_]+)\b")


def queried(expr: str) -> set[str]:
    return set(METRIC.findall(expr)) | ({"up"} if re.search(r"\bup\b", expr) else set())


def exprs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "expr" and isinstance(child, str):
                yield child
            else:
                yield from exprs_in(child)
    elif isinstance(node, list):
        for child in node:
            yield from exprs_in(child)


@pytest.fixture(scope="module")
def known() -> set[str]:
    return metric_names() | BUILTIN


def test_alert_rules_parse_and_query_only_exported_metrics(known: set[str]) -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"SagaShardStuck", "SagaRunsParked", "SagaDeadLettersGrowing",
            "SagaCompensationFailed"} <= alerts.keys()  # fmt: skip
    for name, rule in alerts.items():
        used = queried(rule["expr"])
        assert used, f"{name} queries no metric"
        assert used <= known, f"{name} queries unknown metrics {sorted(used - known)}"


def test_dashboard_parses_and_queries_only_exported_metrics(known: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(exprs_in(dashboard["panels"]))
    assert len(exprs) >= 15
    used = set().union(*(queried(e) for e in exprs))
    assert used <= known, f"the dashboard queries unknown metrics {sorted(used - known)}"
    # every saga metric family appears on some panel
    families = {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in known}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in used}
    missing = {f for f in families if f.startswith("saga_")} - shown
    assert not missing, f"metrics no panel shows: {sorted(missing)}"


def test_scrape_config_loads_the_alert_rules() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    assert "/etc/prometheus/saga-alerts.yml" in config["rule_files"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    http = jobs["saga-http"]
    assert http["authorization"]["credentials_file"], "/metrics of saga http needs a token"
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(str(Path("prometheus") / "saga-alerts.yml") in m for m in mounts)
