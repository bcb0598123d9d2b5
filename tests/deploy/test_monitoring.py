"""The monitoring an on-call engineer gets with Regulars (deploy/k8s/base/monitoring):
the PodMonitor scrapes the four services, each alert fires in its promtool test, and
every metric the alerts and the dashboard name is one the services export."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
sys.path.insert(0, str(Path(__file__).parent))
rules_tool = importlib.import_module("rules")
manifests = importlib.import_module("test_manifests")
BASE: Path = manifests.BASE
RENDERS: list[str] = manifests.RENDERS
SERVICES: dict[str, int] = manifests.SERVICES
of_kind = manifests.of_kind
one = manifests.one
render_named = manifests.render_named
template_labels = manifests.template_labels
MONITORING = BASE / "monitoring"
DASHBOARD = MONITORING / "dashboard.json"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts-test.yaml"

ALERTS = {
    "RegularsConsumerLagGrowing",
    "RegularsConsumerStalled",
    "RegularsOutboxNotPublishing",
    "RegularsDeadLettersWaiting",
    "RegularsTimersLate",
    "RegularsSlaBreachBurst",
}
#: a metric name in PromQL: what follows is not ( or a letter (a function name is)
METRIC = re.compile(r"\b(regulars_[a-z0-9_]+)\b")


def exported() -> set[str]:
    """Every sample name the services' processes can export: what their code registers."""
    for service in SERVICES:
        importlib.import_module(f"regulars_{service}.bootstrap")
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("regulars_"):
            continue
        if family.type == "counter":
            names |= {f"{family.name}_total"}
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
    return names


def rule_exprs() -> dict[str, str]:
    groups = rules_tool.rules()["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_the_alerts_an_sre_expects_are_there() -> None:
    exprs = rule_exprs()
    assert set(exprs) == ALERTS
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
            assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported() -> None:
    names = exported()
    used = {m for e in [*rule_exprs().values(), *dashboard_exprs()] for m in METRIC.findall(e)}
    assert used, "no metric found in the rules or the dashboard"
    assert used - names == set(), f"named but never exported: {sorted(used - names)}"
    # and what the brief of the on-call engineer asks for is on the dashboard
    on_dashboard = {m for e in dashboard_exprs() for m in METRIC.findall(e)}
    for wanted in (
        "regulars_consumer_lag",
        "regulars_outbox_backlog",
        "regulars_outbox_oldest_unpublished_seconds",
        "regulars_dead_letters_waiting",
        "regulars_timers_due",
        "regulars_timers_late",
        "regulars_messages",
        "regulars_webhook_deliveries_total",
        "regulars_recovery_sla_breaches_total",
        "regulars_db_pool_connections",
        "regulars_build_info",
    ):
        assert wanted in on_dashboard, wanted


def test_the_metric_check_would_see_a_misspelt_name() -> None:
    assert "regulars_consumer_lags" not in exported()
    assert METRIC.findall('max by (service) (regulars_timers_late{namespace="x"}) > 0') == [
        "regulars_timers_late"
    ]


def test_each_alert_fires_in_its_promtool_test_and_none_when_healthy(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make promtool` installs it"
    done = rules_tool.check(promtool, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == ALERTS
    healthy = tests[0]["alert_rule_test"]
    assert {c["alertname"] for c in healthy} == ALERTS
    assert all(not c["exp_alerts"] for c in healthy)


def test_a_broken_rule_fails_the_promtool_test(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool
    original = rules_tool.rules

    def lenient() -> dict[str, Any]:
        doc: dict[str, Any] = original()
        for group in doc["groups"]:
            for r in group["rules"]:
                if r["alert"] == "RegularsTimersLate":
                    r["expr"] = r["expr"].replace("> 60", "> 600")
        return doc

    rules_tool.rules = lenient
    try:
        done = rules_tool.check(promtool, tmp_path)
    finally:
        rules_tool.rules = original
    assert done.returncode != 0 and "RegularsTimersLate" in done.stdout + done.stderr


@pytest.mark.parametrize("which", RENDERS)
def test_the_pod_monitor_scrapes_the_four_services_on_their_http_port(which: str) -> None:
    resources = render_named(which)
    monitor = one(resources, "PodMonitor", "regulars")
    selector = monitor["spec"]["selector"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"

    def selected(labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
            return False
        for expr in selector.get("matchExpressions", []):
            assert expr["operator"] == "In"
            if labels.get(expr["key"]) not in expr["values"]:
                return False
        return True

    scraped = set()
    for obj in [*of_kind(resources, "Deployment"), *of_kind(resources, "Job")]:
        if not selected(template_labels(obj)):
            continue
        scraped.add(obj["metadata"]["name"])
        containers = obj["spec"]["template"]["spec"]["containers"]
        ports = {p.get("name") for c in containers for p in c.get("ports", [])}
        assert endpoint["port"] in ports, obj["metadata"]["name"]
    assert scraped == {f"regulars-{s}" for s in SERVICES}


@pytest.mark.parametrize("which", RENDERS)
def test_the_dashboard_is_a_config_map_grafana_picks_up(which: str) -> None:
    resources = render_named(which)
    cm = one(resources, "ConfigMap", "regulars-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(filename, text)] = cm["data"].items()
    assert filename.endswith(".json")
    doc = json.loads(text)
    assert doc == dashboard()
    assert doc["uid"] and doc["title"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert {"datasource", "namespace"} <= set(names)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], panel["title"]


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (as a recording rule), Grafana's variables
    replaced by what Grafana would put there."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make promtool` installs it"
    exprs = [
        e.replace("$namespace", "regulars").replace("$__rate_interval", "1m")
        for e in dashboard_exprs()
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(exprs)} rules found" in done.stdout
