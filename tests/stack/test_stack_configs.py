"""The stack's config files, checked by the real tools: otelcol validate, promtool, and
structural checks of alerts, runbooks, dashboards and docker-compose.yml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_helpers import DASHBOARDS, dashboard_exprs

from otel_mcp.stack import Binaries

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "prometheus" / "rules").glob("*.yaml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*-test.yaml"))
TOOL_TIMEOUT = 120  # seconds for one validate/promtool run

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3600)]  # the first install builds for minutes


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [r for r in group["rules"] if "alert" in r]
    return found


# -- Collector and Jaeger ---------------------------------------------------------------------


def test_collector_config_validates(stack_binaries: Binaries) -> None:
    base = REPO / "collector" / "otelcol-config.yaml"
    run([str(stack_binaries.otelcol), "validate", "--config", str(base)])
    run([str(stack_binaries.otelcol), "validate", "--config", str(base),
         "--config", str(REPO / "collector" / "otelcol-config.test.yaml")])


def test_collector_build_has_the_manifest_components(stack_binaries: Binaries) -> None:
    out = run([str(stack_binaries.otelcol), "components"]).stdout
    for name in ("otlp", "memory_limiter", "batch", "otlp_grpc", "otlp_http", "prometheus", "debug",
                 "span_metrics", "health_check"):
        assert re.search(rf"name: {name}\b", out), f"{name} missing from the Collector build"


def test_jaeger_config_validates(stack_binaries: Binaries) -> None:
    run([str(stack_binaries.jaeger), "validate", "--config", str(REPO / "jaeger" / "jaeger-config.yaml")])


# -- Prometheus -------------------------------------------------------------------------------


def test_promtool_check_config(stack_binaries: Binaries) -> None:
    run([str(stack_binaries.promtool), "check", "config", "prometheus/prometheus.yml"])


def test_promtool_check_rules(stack_binaries: Binaries) -> None:
    run([str(stack_binaries.promtool), "check", "rules", *map(str, RULES)])


@pytest.mark.parametrize("rule_test", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(stack_binaries: Binaries, rule_test: Path) -> None:
    run([str(stack_binaries.promtool), "test", "rules", str(rule_test)])


def test_every_rule_file_has_a_test_file() -> None:
    tested = {p.name.removesuffix("-test.yaml") for p in RULE_TESTS}
    assert {p.stem for p in RULES} == tested


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    checked: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                checked.setdefault(t["alertname"], []).append(bool(t.get("exp_alerts")))
    for alert in alerts():
        seen = checked.get(alert["alert"], [])
        assert True in seen and False in seen, f"{alert['alert']}: needs a firing and a not-firing case"


def test_alerts_follow_the_conventions() -> None:
    runbooks = (REPO / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbooks, re.M)}
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts():
        name = alert["alert"]
        assert re.fullmatch(r"(Mcp|OtelCollector|Jaeger)[A-Za-z0-9]+", name), name
        assert "for" in alert, f"{name}: write `for:` out"
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        ann = alert["annotations"]
        assert ann["summary"] and "{{" not in ann["summary"], f"{name}: summary is short and static"
        assert ann["description"], name
        runbook = ann["runbook_url"]
        assert runbook == f"docs/runbooks.md#{name.lower()}", f"{name}: runbook_url {runbook}"
        assert name.lower() in anchors, f"{name}: no section in docs/runbooks.md"


# -- Dashboards and docker-compose ------------------------------------------------------------


def test_dashboards_exist_and_every_panel_has_a_query() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    for wanted in ("overview", "composition", "cache", "database", "resources"):
        assert any(wanted in t.lower() for t in titles), f"no {wanted} dashboard in {titles}"
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        assert doc["uid"] and doc["panels"], path.name
        for panel in doc["panels"]:
            if panel["type"] != "row":
                assert panel.get("targets"), f"{path.name}: panel {panel['title']!r} has no query"


def test_dashboard_queries_parse(stack_binaries: Binaries, tmp_path: Path) -> None:
    # promtool parses PromQL when it checks rules: one recording rule per panel query.
    exprs = dashboard_exprs()
    assert exprs
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, (_, _, expr) in enumerate(exprs)
    ]}]}
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump(rules))
    run([str(stack_binaries.promtool), "check", "rules", str(path)])


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load((REPO / "grafana" / "provisioning" / "dashboards" / "otel-mcp.yaml").read_text())
    assert provider["providers"][0]["options"]["path"]
    datasources = yaml.safe_load((REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text())
    kinds = {d["type"] for d in datasources["datasources"]}
    assert {"prometheus", "jaeger"} <= kinds


def test_docker_compose_uses_the_same_config_files() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    images = {name: svc["image"] for name, svc in services.items()}
    assert images["otel-collector"].startswith("otel/opentelemetry-collector-contrib:")
    assert images["jaeger"].startswith("jaegertracing/jaeger:")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana:")
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: mounts missing {source}"
    mounted = " ".join(v for svc in services.values() for v in svc.get("volumes", []))
    for config in ("collector/otelcol-config.yaml", "jaeger/jaeger-config.yaml", "prometheus/prometheus.yml",
                   "prometheus/rules", "grafana/dashboards"):
        assert config in mounted, f"docker-compose.yml does not mount {config}"


def test_docker_compose_config_parses() -> None:
    # `docker compose config` needs no engine; nor does Debian's docker-compose 1.29.
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        run([docker, "compose", "-f", "docker-compose.yml", "config", "-q"])
    elif compose := shutil.which("docker-compose"):
        run([compose, "-f", "docker-compose.yml", "config", "-q"])
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (structure checked above)")
