"""Dashboards and alerts mean something whatever protocol the clients speak (docs/telemetry.md, "Protocols").

Two servers export to the session's real stack, each with its own ``service.namespace`` (so its own Prometheus
job): one serves only 2026-07-28 clients (sessionless), the other only clients that connect with
``initialize``. Then, against the real Prometheus, for each of them:

- every Grafana panel's PromQL returns data, unless the panel's description says it is for the other
  protocol's clients only;
- every alert expression evaluates, and reads no series that one protocol's server has and the other's lacks.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client
from stack_helpers import REPO, dashboard_panels, get_json, prom_query, sample_server, wait_for

from otel_mcp.stack import StackStatus

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

BACKEND_TIMEOUT = 90.0  # seconds for telemetry to travel SDK -> Collector -> Prometheus on a loaded machine
ERAS = {"sessionless": {}, "handshake": {"mode": "legacy"}}  # namespace -> how its client connects
ONLY_FOR = {"handshake": "Handshake clients only"}  # the description prefix of a panel for one era's clients
ALERT_RULES = sorted((REPO / "prometheus" / "rules").glob("*.yaml"))


async def _workload(url: str, client_args: dict[str, Any], era: str) -> None:
    """What the demo does (reads, compositions, a write, a conflicting write, search, history, a resource),
    over two connections: a handshake client's sessions then end, and are measured."""
    for round_ in range(2):
        async with Client(url, **client_args) as client:
            await client.call_tool("list_rules", {})
            for files in (["src/app.py"], ["src/ui/App.tsx", "src/ui/App.test.tsx"], ["README.md"]):
                for _ in range(3):
                    await client.call_tool("compose_rules", {"context_files": files, "token_budget": 2000})
            rule_id = f"{era}-{round_}"
            await client.call_tool("create_rule", {"id": rule_id, "body": "# Era\n\nWritten by the test."})
            stale = await client.call_tool("update_rule", {"id": rule_id, "expected_version": 99, "body": "stale"})
            assert stale.is_error
            await client.call_tool("search_rules", {"query": "python"})
            await client.call_tool("rule_history", {"id": rule_id})
            await client.read_resource("rules://index")


@pytest.fixture(scope="module")
def eras(stack: StackStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One server per era, each after its workload; yields era -> Prometheus job. The servers keep exporting."""
    with contextlib.ExitStack() as servers:
        for era, client_args in ERAS.items():
            url, _ = servers.enter_context(sample_server(
                stack, tmp_path_factory.mktemp(era),
                OTEL_SERVICE_NAME="otel-mcp", OTEL_RESOURCE_ATTRIBUTES=f"service.namespace={era}",
            ))
            anyio.run(_workload, url, client_args, era)
        yield {era: f"{era}/otel-mcp" for era in ERAS}


def _has_data(prometheus: str, expr: str) -> bool:
    answer = prom_query(prometheus, expr)
    return answer["status"] == "success" and bool(answer["data"]["result"])


@pytest.mark.parametrize("era", list(ERAS))
def test_every_panel_has_data_unless_it_is_for_the_other_protocol(
    stack: StackStatus, eras: dict[str, str], era: str
) -> None:
    prometheus = stack.urls["prometheus"]
    other_only = tuple(prefix for other, prefix in ONLY_FOR.items() if other != era)
    panels = dashboard_panels(namespace=era)
    expected = [(d, t, e) for d, t, e, description in panels if not (other_only and description.startswith(other_only))]

    def empty() -> list[str]:
        return [f"{d} / {t}: {e}" for d, t, e in expected if not _has_data(prometheus, e)]

    wait_for(lambda: not empty(), BACKEND_TIMEOUT, lambda: f"{era}: panels without data: {empty()}", interval=3.0)
    # the span-metrics panels sum both servers (by service name): this one's server spans are in them
    spans = f'traces_span_metrics_calls_total{{job="{eras[era]}", span_kind="SPAN_KIND_SERVER"}}'
    wait_for(lambda: _has_data(prometheus, spans), BACKEND_TIMEOUT,
             lambda: f"{spans}; span metrics: {prom_query(prometheus, 'traces_span_metrics_calls_total')}")
    # the protocol version each server's clients negotiated is on the duration metric
    versions = prom_query(prometheus, "sum by (mcp_protocol_version) (mcp_server_operation_duration_seconds_count"
                                      f'{{job="{eras[era]}"}})')["data"]["result"]
    negotiated = {series["metric"]["mcp_protocol_version"] for series in versions}
    assert negotiated == ({"2026-07-28"} if era == "sessionless" else {"2025-11-25"}), negotiated


def _alerts() -> list[tuple[str, str]]:
    return [(rule["alert"], rule["expr"]) for path in ALERT_RULES
            for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def _series_names(prometheus: str, expr: str) -> set[str]:
    """The metric and recording-rule names ``expr`` reads (the identifiers Prometheus knows as names)."""
    known = set(get_json(f"{prometheus}/api/v1/label/__name__/values")["data"])
    return {token for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if token in known}


@pytest.mark.parametrize(("alert", "expr"), _alerts(), ids=lambda v: str(v)[:40])
def test_every_alert_reads_what_both_protocols_report(
    stack: StackStatus, eras: dict[str, str], alert: str, expr: str
) -> None:
    prometheus = stack.urls["prometheus"]
    assert prom_query(prometheus, expr)["status"] == "success", expr

    def jobs_reporting(name: str) -> set[str]:
        answer = prom_query(prometheus, f'count by (job) ({{__name__="{name}"}})')["data"]["result"]
        return {series["metric"].get("job", "") for series in answer} & set(eras.values())

    def lopsided() -> dict[str, set[str]]:
        reported = {name: jobs_reporting(name) for name in _series_names(prometheus, expr)}
        return {name: jobs for name, jobs in reported.items() if len(jobs) == 1}

    # wait until both servers' series are in (one may be a scrape behind), then none may be missing for good
    wait_for(lambda: not lopsided(), BACKEND_TIMEOUT,
             lambda: f"{alert} reads series only one protocol's server reports: {lopsided()}", interval=3.0)
