"""End to end with the real server: MCP client -> otel-mcp -> Collector -> Jaeger and Prometheus.

One traced workload (``python -m otel_mcp.demo``: a real MCP client that sends its trace
context in ``params._meta``) against ``otel-mcp serve --transport http`` exporting OTLP to
the session's stack; then every assertion reads the real backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from stack_helpers import dashboard_queries_without_data, get_json, prom_query, sample_server, wait_for

from otel_mcp.stack import StackStatus

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3600)]

BACKEND_TIMEOUT = 90.0  # seconds for telemetry to travel SDK -> Collector -> backend on a loaded machine
SERVICE = "otel-mcp"  # the service the dashboards and alert rules select


@pytest.fixture(scope="module")
def workload(stack: StackStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Start the server against the stack, run the traced workload once, yield its result."""
    with sample_server(stack, tmp_path_factory.mktemp("e2e"), OTEL_SERVICE_NAME=SERVICE) as (url, env):
        run = subprocess.run(
            [sys.executable, "-m", "otel_mcp.demo", url, env["OTEL_EXPORTER_OTLP_ENDPOINT"]],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )
        result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        yield {**result, "url": url}


def _trace(stack: StackStatus, trace_id: str, want: set[str],
           ready: Callable[[list[dict[str, Any]]], bool] = lambda _: True) -> dict[str, Any]:
    """The trace once Jaeger has spans of every name in ``want`` and ``ready(spans)`` holds."""
    base = stack.urls["jaeger_api"].split("/api/")[0]

    def probe() -> dict[str, Any] | None:
        data = get_json(f"{base}/api/traces/{trace_id}").get("data") or []
        names = {s["operationName"] for s in data[0]["spans"]} if data else set()
        return data[0] if want <= names and ready(data[0]["spans"]) else None

    found: dict[str, Any] = wait_for(probe, BACKEND_TIMEOUT, f"trace {trace_id} with spans {sorted(want)}")
    return found


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def test_the_clients_trace_holds_server_composition_and_sqlite_spans(
    stack: StackStatus, workload: dict[str, Any]
) -> None:
    steps = {f"otel_mcp.compose.{s}" for s in ("select", "expand_imports", "resolve", "order", "budget", "render")}
    def legacy_compose_exported(spans: list[dict[str, Any]]) -> bool:  # the handshake-era session comes last
        return any(s["operationName"] == "tools/call compose_rules" and _tags(s).get("mcp.session.id")
                   for s in spans)

    trace = _trace(stack, workload["trace_id"], {"demo workload", "tools/call compose_rules", "otel_mcp.compose",
                                                 "initialize", "tools/call create_rule", "INSERT", *steps},
                   legacy_compose_exported)
    spans = {s["spanID"]: s for s in trace["spans"]}
    services = {pid: p["serviceName"] for pid, p in trace["processes"].items()}

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        ref = next((r for r in span["references"] if r["refType"] == "CHILD_OF"), None)
        return spans.get(ref["spanID"]) if ref else None

    servers = [s for s in spans.values() if s["operationName"] == "tools/call compose_rules"]
    assert servers and all(services[s["processID"]] == SERVICE for s in servers)
    for server in servers:
        tags = _tags(server)
        assert tags["span.kind"] == "server"
        assert tags["mcp.method.name"] == "tools/call" and tags["gen_ai.tool.name"] == "compose_rules"
        # (no mcp.session.id: the 2026-07-28 protocol this client negotiates has no sessions)
        assert tags["network.transport"] == "tcp" and tags["client.address"] == "127.0.0.1"
        client = parent(server)  # the client's span, reached through params._meta
        assert client is not None and services[client["processID"]] == "otel-mcp-demo-client"
        assert client["operationName"] == "MCP send tools/call compose_rules"
    # the handshake-era client's session has an id; the 2026-07-28 requests have none to report
    assert any(_tags(s).get("mcp.session.id") for s in servers), "no server span carries mcp.session.id"
    compositions = [s for s in spans.values() if s["operationName"] == "otel_mcp.compose"]
    assert compositions, "no composition ran (every request a cache hit?)"
    for composition in compositions:
        assert parent(composition)["operationName"] == "tools/call compose_rules"  # type: ignore[index]
        children = {s["operationName"] for s in spans.values() if parent(s) is composition}
        assert steps <= children
    writes = [s for s in spans.values() if s["operationName"] == "INSERT"]
    assert all(_tags(w)["db.system.name"] == "sqlite" and "db.query.text" in _tags(w) for w in writes)
    parents = [(parent(w) or {}).get("operationName") for w in writes]
    assert "tools/call create_rule" in parents, parents


@pytest.mark.parametrize("expr", [
    f'sum(mcp_server_operation_duration_seconds_count{{service_name="{SERVICE}"}})',
    f'sum(mcp_server_session_duration_seconds_count{{service_name="{SERVICE}"}})',
    f'sum(otel_mcp_cache_requests_total{{service_name="{SERVICE}"}})',
    f'sum(db_client_operation_duration_seconds_count{{service_name="{SERVICE}",db_system_name="sqlite"}})',
    f'sum(otel_mcp_compose_duration_seconds_count{{service_name="{SERVICE}"}})',
    f'max(process_memory_usage_bytes{{service_name="{SERVICE}"}})',
    f'sum(traces_span_metrics_calls_total{{service_name="{SERVICE}"}})',
    # the per-request OTel log records got through the real Collector's
    # OTLP receiver (its own metrics, scraped by Prometheus; the server is the only log source here)
    'sum({__name__=~"otelcol_receiver_accepted_log_records(_total)?",receiver="otlp"})',
])
def test_prometheus_has_the_servers_metrics(stack: StackStatus, workload: dict[str, Any], expr: str) -> None:
    def probe() -> float | None:
        result = prom_query(stack.urls["prometheus"], expr)["data"]["result"]
        value = float(result[0]["value"][1]) if result else 0.0
        return value if value > 0 else None

    wait_for(probe, BACKEND_TIMEOUT, expr)


def test_jaeger_monitor_tab_has_the_servers_call_rates(stack: StackStatus, workload: dict[str, Any]) -> None:
    base = stack.urls["jaeger_api"].split("/api/")[0]

    async def more_calls() -> None:
        async with Client(workload["url"]) as client:
            for _ in range(5):
                await client.call_tool("list_rules", {})

    def probe() -> bool:
        # The workload came in one burst, before Prometheus's first scrape of its series: a rate needs
        # the counter to grow between scrapes, so keep some traffic going while we wait.
        anyio.run(more_calls)
        end = int(time.time() * 1000)
        doc = get_json(f"{base}/api/metrics/calls?service={SERVICE}&endTs={end}&lookback=900000&step=5000"
                       "&ratePer=60000&spanKind=server")
        points = [p for m in doc.get("metrics", []) for p in m.get("metricPoints", [])]
        return any(p.get("gaugeValue", {}).get("doubleValue", 0) > 0 for p in points)

    def describe() -> str:
        series = prom_query(stack.urls["prometheus"], f'traces_span_metrics_calls_total{{service_name="{SERVICE}"}}')
        return f"SPM call rates for {SERVICE} (series in Prometheus: {series['data']['result'][:3]})"

    wait_for(probe, BACKEND_TIMEOUT, describe)


def test_the_workload_showed_an_optimistic_concurrency_conflict(workload: dict[str, Any]) -> None:
    assert workload["conflict_shown"] is True and workload["calls"] >= 20


def test_every_dashboard_panel_has_data_after_the_real_workload(stack: StackStatus, workload: dict[str, Any]) -> None:
    wait_for(lambda: not dashboard_queries_without_data(stack.urls["prometheus"]), BACKEND_TIMEOUT,
             lambda: f"dashboard panels without data: {dashboard_queries_without_data(stack.urls['prometheus'])}",
             interval=3.0)
