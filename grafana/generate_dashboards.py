"""Write grafana/dashboards/*.json: the otel-mcp dashboards for docker-compose users.

The JSON files are committed; edit the panel lists here and run
    python grafana/generate_dashboards.py
Queries use the recording rules in prometheus/rules/ where one exists, so dashboards,
alerts and the promtool tests agree on one definition. Every query is parsed by promtool
and run against the real Prometheus in tests/stack/, after a workload of 2026-07-28
(sessionless) clients only and after one of handshake clients only: a panel may be empty
for one of them only if its description starts with that protocol's marker below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
J = 'job=~"$job"'
# Sessions exist only for clients that connect with initialize (docs/telemetry.md).
HANDSHAKE_ONLY = "Handshake clients only (protocol 2025-11-25 and earlier): "


def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
          width: int = 12, description: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
        "gridPos": {"w": width, "h": 8},
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = 0
    for i, p in enumerate(panels, start=1):
        w = p["gridPos"]["w"]
        if x + w > 24:
            x, y = 0, y + 8
        p["gridPos"] |= {"x": x, "y": y}
        p["id"] = i
        x += w
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["otel-mcp"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "job",
            "label": "job",
            "type": "query",
            "datasource": DS,
            "query": {"query": "label_values(mcp_server_operation_duration_seconds_count, job)",
                      "refId": "job"},
            "definition": "label_values(mcp_server_operation_duration_seconds_count, job)",
            "current": {"text": "otel-mcp", "value": "otel-mcp"},
            "includeAll": False,
            "refresh": 2,
        }]},
        "links": [{"title": "otel-mcp dashboards", "type": "dashboards", "tags": ["otel-mcp"], "asDropdown": True}],
        "panels": panels,
    }


OVERVIEW = dashboard("otel-mcp-overview", "otel-mcp / MCP overview",
                     "RED metrics per MCP method, tool and protocol version, sessions, and firing alerts.", [
    panel("Operations per second by method", [
        (f"job_mcp_method_name:mcp_server_operation_duration_seconds_count:rate5m{{{J}}}", "{{mcp_method_name}}")],
        unit="ops"),
    panel("Operations per second by protocol version", [
        (f"job_mcp_protocol_version:mcp_server_operation_duration_seconds_count:rate5m{{{J}}}",
         "{{mcp_protocol_version}}")], unit="ops", width=24,
        description="The version each client negotiated: 2026-07-28 clients are sessionless (server/discover), "
                    "earlier ones connect with initialize and have a session."),
    panel("Error ratio by method", [
        (f"job_mcp_method_name:mcp_server_operation_errors_per_operations:ratio_rate5m{{{J}}}",
         "{{mcp_method_name}}")], unit="percentunit"),
    panel("Latency p50 / p99 by method", [
        (f"job_mcp_method_name:mcp_server_operation_duration_seconds:p50_5m{{{J}}}", "p50 {{mcp_method_name}}"),
        (f"job_mcp_method_name:mcp_server_operation_duration_seconds:p99_5m{{{J}}}", "p99 {{mcp_method_name}}")],
        unit="s"),
    panel("Tool calls per second and p99", [
        (f"job_gen_ai_tool_name:mcp_server_operation_duration_seconds_count:rate5m{{{J}}}", "rate {{gen_ai_tool_name}}"),
        (f"job_gen_ai_tool_name:mcp_server_operation_duration_seconds:p99_5m{{{J}}}", "p99 {{gen_ai_tool_name}}")]),
    panel("Tool errors per second", [
        (f"job_gen_ai_tool_name:otel_mcp_tool_errors:rate5m{{{J}}}", "{{gen_ai_tool_name}}")],
        unit="ops", width=8),
    panel("Active sessions / requests in flight", [
        (f"sum(otel_mcp_mcp_active_sessions{{{J}}})", "sessions"),
        (f"sum(otel_mcp_mcp_requests_in_flight{{{J}}})", "in flight")], width=8,
        description="Sessions count handshake clients only (2026-07-28 clients have none: 0 with only them); "
                    "requests in flight count every client."),
    panel("Session duration p50 / p95", [
        (f"histogram_quantile(0.5, sum by (le) (rate(mcp_server_session_duration_seconds_bucket{{{J}}}[5m])))",
         "p50"),
        (f"histogram_quantile(0.95, sum by (le) (rate(mcp_server_session_duration_seconds_bucket{{{J}}}[5m])))",
         "p95")], unit="s", width=8,
        description=HANDSHAKE_ONLY + "a session lasts from initialize to the end of the connection."),
    panel("Server spans per second (from traces)", [
        ('service_name_span_name:traces_span_metrics_calls:rate5m{service_name="otel-mcp", span_kind="SPAN_KIND_SERVER"}',
         "{{span_name}}")], unit="ops",
        description="spanmetrics connector: the same RED view Jaeger's Monitor tab shows."),
    panel("Server span error ratio (from traces)", [
        ('service_name_span_name:traces_span_metrics_errors_per_calls:ratio_rate5m{service_name="otel-mcp", '
         'span_kind="SPAN_KIND_SERVER"}', "{{span_name}}")], unit="percentunit"),
    panel("Alerts firing", [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
          kind="stat", width=12, description="Prometheus alerts in state firing; details in Prometheus /alerts."),
    panel("Server-side alerts raised", [
        (f"sum by (alert) (increase(otel_mcp_alerts_total{{{J}}}[$__range])) or vector(0)", "{{alert}}")],
        kind="stat", width=12),
])

COMPOSITION = dashboard("otel-mcp-composition", "otel-mcp / Composition",
                        "The rule-composition pipeline: per-step latency and composed rule counts.", [
    panel("Compose step latency p95", [
        (f"job_step:otel_mcp_compose_duration_seconds:p95_5m{{{J}}}", "{{step}}")], unit="s"),
    panel("Compose steps per second", [
        (f"sum by (step) (rate(otel_mcp_compose_duration_seconds_count{{{J}}}[$__rate_interval]))", "{{step}}")],
        unit="ops"),
    panel("Rules per composition p50 / p95", [
        (f"histogram_quantile(0.5, sum by (le) (rate(otel_mcp_compose_rules_bucket{{{J}}}[$__rate_interval])))", "p50"),
        (f"histogram_quantile(0.95, sum by (le) (rate(otel_mcp_compose_rules_bucket{{{J}}}[$__rate_interval])))", "p95")]),
    panel("Mean compose time per step", [
        (f"sum by (step) (rate(otel_mcp_compose_duration_seconds_sum{{{J}}}[$__rate_interval])) / "
         f"sum by (step) (rate(otel_mcp_compose_duration_seconds_count{{{J}}}[$__rate_interval]))", "{{step}}")],
        unit="s"),
    panel("Span p99 by name (from traces)", [
        ('service_name_span_name:traces_span_metrics_duration_seconds:p99_5m{service_name="otel-mcp"}',
         "{{span_name}}")], unit="s", width=24),
])

CACHE = dashboard("otel-mcp-cache", "otel-mcp / Cache",
                  "The two-tier composition cache: hit ratio, lookups, errors and evictions.", [
    panel("Hit ratio (any tier)", [(f"job:otel_mcp_cache_hits_per_requests:ratio_rate5m{{{J}}}", "overall")],
          unit="percentunit", kind="stat", width=8),
    panel("Hit ratio by tier", [
        (f"job_tier:otel_mcp_cache_hits_per_requests:ratio_rate5m{{{J}}}", "{{tier}}")], unit="percentunit",
        width=16),
    panel("Lookups per second by tier and result", [
        (f"sum by (tier, result) (rate(otel_mcp_cache_requests_total{{{J}}}[$__rate_interval]))",
         "{{tier}} {{result}}")], unit="ops"),
    panel("Errors and evictions per second", [
        (f"sum(rate(otel_mcp_cache_errors_total{{{J}}}[$__rate_interval]))", "errors"),
        (f"job:otel_mcp_cache_evictions:rate5m{{{J}}}", "evictions")], unit="ops"),
])

DATABASE = dashboard("otel-mcp-database", "otel-mcp / Database",
                     "The SQLite rule store: latency per operation, throughput and slow queries.", [
    panel("Latency p50 / p99 by operation", [
        (f"job_db_operation_name:db_client_operation_duration_seconds:p50_5m{{{J}}}", "p50 {{db_operation_name}}"),
        (f"job_db_operation_name:db_client_operation_duration_seconds:p99_5m{{{J}}}", "p99 {{db_operation_name}}")],
        unit="s"),
    panel("Operations per second", [
        (f"job_db_operation_name:db_client_operation_duration_seconds_count:rate5m{{{J}}}", "{{db_operation_name}}")],
        unit="ops"),
    panel("Operations per second by table", [
        (f'sum by (db_collection_name) (rate(db_client_operation_duration_seconds_count{{{J}, db_system_name="sqlite"}}'
         f"[$__rate_interval]))", "{{db_collection_name}}")], unit="ops"),
    panel("Slow queries per second", [(f"job:otel_mcp_db_slow_queries:rate5m{{{J}}}", "slow")], unit="ops"),
])

RESOURCES = dashboard("otel-mcp-resources", "otel-mcp / Resources",
                      "The server process and the telemetry pipeline (Collector, Jaeger).", [
    panel("Server memory (resident)", [
        (f"job_instance:process_memory_usage_bytes:max{{{J}}}", "{{instance}}")], unit="bytes", width=8),
    panel("Server CPU (cores)", [
        (f"job_instance:process_cpu_time_seconds:rate5m{{{J}}}", "{{instance}}")], unit="percentunit", width=8),
    panel("Open file descriptors / threads", [
        (f"job_instance:process_open_file_descriptor_count:max{{{J}}}", "fds {{instance}}"),
        (f"max by (instance) (process_thread_count{{{J}}})", "threads {{instance}}")], width=8),
    panel("Collector: accepted items per second", [
        ("job:otelcol_receiver_accepted_items:rate5m", "{{job}}")], unit="ops", width=8),
    panel("Telemetry lost per second", [
        ("job_exporter:otelcol_exporter_failed_items:rate5m", "{{job}} {{exporter}}"),
        (f"sum by (signal, error_type) (rate(otel_mcp_telemetry_dropped_total{{{J}}}[5m])) or vector(0)",
         "server SDK {{signal}} {{error_type}}")], unit="ops", width=8,
        description="Collector/Jaeger exporters (failed sends, full queues) and the server's SDK (dropped before export)."),
    panel("Collector: export queue fill", [
        ("job_exporter:otelcol_exporter_queue_size_per_capacity:ratio", "{{job}} {{exporter}}")],
        unit="percentunit", width=8),
    panel("Pipeline processes memory", [
        ('max by (job) ({__name__=~"otelcol_process_memory_rss(_bytes)?"})', "{{job}}")], unit="bytes"),
    panel("Scrape targets up", [("up", "{{job}}")], width=12),
])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for doc in (OVERVIEW, COMPOSITION, CACHE, DATABASE, RESOURCES):
        name = doc["uid"].removeprefix("otel-mcp-")
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {OUT / name}.json ({len(doc['panels'])} panels)")


if __name__ == "__main__":
    main()
