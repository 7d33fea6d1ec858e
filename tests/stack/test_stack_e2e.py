"""The real pipeline: OTLP from the Python SDK -> Collector -> Jaeger and Prometheus.

Sends one trace (a server span with a child) and a histogram, then asserts what the
backends answer: the trace in Jaeger's API, the metric and the spanmetrics series in
Prometheus, Jaeger's SPM endpoint, the rules loaded, and every dashboard query accepted.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from stack_helpers import dashboard_exprs, get_json, prom_query, wait_for

from otel_mcp.stack import StackStatus, status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3600)]  # the first install builds for minutes

PIPELINE_TIMEOUT = 60.0  # seconds from export to queryable (flush 2s, scrape 5s, rate needs 2 samples)
SERVICE = f"otel-mcp-stack-test-{uuid.uuid4().hex[:6]}"
SPAN_ROUNDS = 12  # one trace per second: > 2 scrape intervals (5s) and several spanmetrics flushes (2s)


@pytest.fixture(scope="module")
def sent(stack: StackStatus) -> Iterator[dict[str, Any]]:
    """Export a few traces and histogram points for ``SERVICE`` through the Collector."""
    resource = Resource.create({"service.name": SERVICE, "service.instance.id": "stack-test-1"})
    endpoint = stack.urls["otlp_grpc"]
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=1000)
    seconds_buckets = View(instrument_name="*duration", aggregation=ExplicitBucketHistogramAggregation(
        [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]))
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], views=[seconds_buckets])
    tracer = tracer_provider.get_tracer("tests.stack")
    histogram = meter_provider.get_meter("tests.stack").create_histogram(
        "mcp.server.operation.duration", unit="s", description="MCP request duration")
    # rate() (and so Jaeger's SPM) needs a counter that grows between two scrapes: wait for
    # Prometheus to scrape the Collector once, then spread the spans over two scrape intervals.
    wait_for(lambda: prom_query(stack.urls["prometheus"], 'up{job="otel-collector-exporter"} == 1')["data"]["result"],
             PIPELINE_TIMEOUT, "Prometheus scraping the Collector's exporter")
    trace_ids = []
    for i in range(SPAN_ROUNDS):
        with tracer.start_as_current_span("tools/call compose_rules", kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("mcp.method.name", "tools/call")
            span.set_attribute("gen_ai.tool.name", "compose_rules")
            with tracer.start_as_current_span("SELECT rules", kind=trace.SpanKind.CLIENT) as child:
                child.set_attribute("db.system.name", "sqlite")
            trace_ids.append(format(span.get_span_context().trace_id, "032x"))
        histogram.record(0.02 * (i + 1), {"mcp.method.name": "tools/call", "gen_ai.tool.name": "compose_rules"})
        tracer_provider.force_flush()
        time.sleep(1.0)
    tracer_provider.force_flush()
    meter_provider.force_flush()
    # Keep exporting the cumulative histogram for a while so Prometheus scrapes it twice.
    yield {"trace_ids": trace_ids, "service": SERVICE, "stack": stack}
    meter_provider.shutdown()
    tracer_provider.shutdown()


def test_stack_is_healthy(stack: StackStatus) -> None:
    st = status(stack.state_dir)
    assert st.healthy, st
    assert set(st.urls) >= {"otlp_grpc", "otlp_http", "prometheus", "jaeger_api", "jaeger_spm"}


def test_trace_reaches_jaeger(sent: dict[str, Any]) -> None:
    api = sent["stack"].urls["jaeger_api"].split("/api/")[0]
    trace_id = sent["trace_ids"][0]

    def fetch() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = get_json(f"{api}/api/traces/{trace_id}")["data"]
        return data if data and len(data[0]["spans"]) == 2 else None

    (found,) = wait_for(fetch, PIPELINE_TIMEOUT, f"trace {trace_id} in Jaeger")
    spans = {s["operationName"]: s for s in found["spans"]}
    server, child = spans["tools/call compose_rules"], spans["SELECT rules"]
    assert child["references"][0]["spanID"] == server["spanID"]
    assert found["processes"][server["processID"]]["serviceName"] == sent["service"]
    tags = {t["key"]: t["value"] for t in server["tags"]}
    assert tags["mcp.method.name"] == "tools/call"
    assert tags["span.kind"] == "server"

    services = get_json(f"{api}/api/services")["data"]
    assert sent["service"] in services
    by_service = get_json(f"{api}/api/traces?{urllib.parse.urlencode({'service': sent['service'], 'limit': 20})}")
    assert {t["traceID"] for t in by_service["data"]} >= set(sent["trace_ids"][:1])


def test_metric_reaches_prometheus(sent: dict[str, Any]) -> None:
    prom = sent["stack"].urls["prometheus"]
    expr = f'mcp_server_operation_duration_seconds_count{{service_name="{sent["service"]}"}}'

    def fetch() -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] = prom_query(prom, expr)["data"]["result"]
        return result if result and float(result[0]["value"][1]) >= SPAN_ROUNDS else None

    (series,) = wait_for(fetch, PIPELINE_TIMEOUT, f"{expr} >= {SPAN_ROUNDS} in Prometheus")
    labels = series["metric"]
    assert labels["job"] == sent["service"]  # honor_labels keeps the exporter's job
    assert labels["mcp_method_name"] == "tools/call"
    assert labels["gen_ai_tool_name"] == "compose_rules"
    buckets = prom_query(prom, f'mcp_server_operation_duration_seconds_bucket{{service_name="{sent["service"]}"}}')
    assert {b["metric"]["le"] for b in buckets["data"]["result"]} >= {"0.05", "0.1", "+Inf"}


def test_spanmetrics_series_exist(sent: dict[str, Any]) -> None:
    prom = sent["stack"].urls["prometheus"]
    calls = (f'traces_span_metrics_calls_total{{service_name="{sent["service"]}", '
             f'span_name="tools/call compose_rules", span_kind="SPAN_KIND_SERVER"}}')
    wait_for(lambda: prom_query(prom, calls)["data"]["result"], PIPELINE_TIMEOUT, calls)
    duration = f'traces_span_metrics_duration_milliseconds_bucket{{service_name="{sent["service"]}"}}'
    assert prom_query(prom, duration)["data"]["result"]
    # The recording rule over them evaluates too (every 5s, once rate() has two samples).
    recorded = f'service_name_span_name:traces_span_metrics_calls:rate5m{{service_name="{sent["service"]}"}}'
    wait_for(lambda: prom_query(prom, recorded)["data"]["result"], PIPELINE_TIMEOUT, recorded)


def test_jaeger_spm_returns_data(sent: dict[str, Any]) -> None:
    api = sent["stack"].urls["jaeger_api"].split("/api/")[0]
    last: list[Any] = []

    def fetch() -> list[dict[str, Any]] | None:
        now_ms = int(time.time() * 1000)
        query = urllib.parse.urlencode({
            "service": sent["service"], "endTs": now_ms, "lookback": 15 * 60_000, "step": 5_000,
            "ratePer": 60_000, "spanKind": "server",
        })
        answer = get_json(f"{api}/api/metrics/calls?{query}")
        last[:] = [answer]
        points = [p for m in answer["metrics"] for p in m.get("metricPoints", [])
                  if p.get("gaugeValue", {}).get("doubleValue", 0) > 0]
        return points or None

    def describe() -> str:
        raw = prom_query(sent["stack"].urls["prometheus"],
                         f'traces_span_metrics_calls_total{{service_name="{sent["service"]}"}}[2m]')
        return f"Jaeger SPM call rates for {sent['service']} (last answer {last}; series {raw})"

    wait_for(fetch, PIPELINE_TIMEOUT, describe)


def test_an_alert_fires_for_real(sent: dict[str, Any]) -> None:
    # prometheus/tests/e2e-alerts.yaml: McpServerHighLatency with p99 > 10ms; the fixture
    # recorded 20ms..240ms.
    prom = sent["stack"].urls["prometheus"]

    def firing() -> list[dict[str, Any]] | None:
        alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
        found = [a for a in alerts if a["labels"]["alertname"] == "McpServerHighLatency"
                 and a["labels"].get("test") == "e2e" and a["labels"].get("job") == sent["service"]
                 and a["state"] == "firing"]
        return found or None

    (alert,) = wait_for(firing, PIPELINE_TIMEOUT, "McpServerHighLatency (test threshold) firing")
    assert alert["labels"]["mcp_method_name"] == "tools/call"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#mcpserverhighlatency"


def test_rules_are_loaded(stack: StackStatus) -> None:
    prom = stack.urls["prometheus"]
    groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"McpServerHighErrorRatio", "OtelCollectorTelemetryDropped", "McpCacheLowHitRatio"} <= names
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not unhealthy


def test_scrape_targets_are_up(sent: dict[str, Any]) -> None:
    prom = sent["stack"].urls["prometheus"]
    wanted = {"otel-collector-exporter", "otel-collector", "jaeger", "prometheus"}

    def fetch() -> set[str] | None:
        result = prom_query(prom, "up == 1")["data"]["result"]
        up = {r["metric"]["job"] for r in result}
        return up if wanted <= up else None

    wait_for(fetch, PIPELINE_TIMEOUT, f"targets {sorted(wanted)} up")


@pytest.mark.parametrize(("dashboard", "title", "expr"), dashboard_exprs(), ids=lambda v: str(v)[:60])
def test_dashboard_query_runs(stack: StackStatus, dashboard: str, title: str, expr: str) -> None:
    answer = prom_query(stack.urls["prometheus"], expr)
    assert answer["status"] == "success", f"{dashboard} / {title}: {answer}"
