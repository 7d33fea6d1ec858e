"""Both launch paths build one pipeline: ``otel-mcp serve`` and ``opentelemetry-instrument otel-mcp serve``.

Each runs as a real server process exporting OTLP (gRPC, then HTTP/protobuf) to a receiver in this test,
driven by the official MCP client with the same workload; what arrives must match: span names and their
attribute keys, metric names, units, attribute keys and bucket boundaries, log records. ``otel-mcp://stats``
has the request figures both ways.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections import defaultdict
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from mcp import Client
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from test_live import _calls, _seed, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# Exported quickly, so that a short run has everything at shutdown; no alert or slow-query record that a
# loaded machine could add to one run and not the other.
FAST_EXPORT = {"OTEL_METRIC_EXPORT_INTERVAL": "500", "OTEL_BSP_SCHEDULE_DELAY": "100",
               "OTEL_BLRP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "otel-mcp-launch",
               "OTEL_MCP_ALERT_SLOW_QUERY_MS": "600000", "OTEL_MCP_ALERT_SLOW_REQUEST_MS": "600000"}


class Received:
    """What the receiver got, reduced to what must match between the launch paths."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, set[str]] = defaultdict(set)  # span name -> attribute keys seen
        self.metrics: dict[str, dict[str, Any]] = {}  # name -> unit, attribute keys, bucket boundaries
        self.logs: set[tuple[str, str, tuple[str, ...]]] = set()  # (scope, event name, attribute keys)

    def traces(self, request: Any) -> None:
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans[span.name] |= {a.key for a in span.attributes}

    def metric_data(self, request: Any) -> None:
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        points = getattr(metric, kind).data_points
                        entry = self.metrics.setdefault(metric.name, {"unit": metric.unit, "keys": set(),
                                                                      "bounds": set(), "kind": kind})
                        for point in points:
                            entry["keys"] |= {a.key for a in point.attributes}
                            if kind == "histogram":
                                entry["bounds"].add(tuple(point.explicit_bounds))

    def log_data(self, request: Any) -> None:
        with self.lock:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        keys = tuple(sorted(a.key for a in record.attributes if not a.key.startswith("code.")))
                        self.logs.add((sl.scope.name, record.event_name, keys))


class Receiver:
    """OTLP over gRPC and HTTP/protobuf, into one ``Received``."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                received.traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                received.metric_data(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                received.log_data(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.grpc)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.grpc)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()

        routes = {"/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, received.traces, trace_service_pb2
                                 .ExportTraceServiceResponse),
                  "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, received.metric_data,
                                  metrics_service_pb2.ExportMetricsServiceResponse),
                  "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, received.log_data,
                               logs_service_pb2.ExportLogsServiceResponse)}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                message, sink, response = routes[self.path]
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                sink(message.FromString(body))
                payload = response().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def endpoint(self, protocol: str) -> str:
        return f"http://127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def close(self) -> None:
        self.grpc.stop(0)
        self.http.shutdown()


async def _run(tmp: Path, protocol: str, launcher: str, db: str | None = None,
               extra_env: dict[str, str] | None = None) -> tuple[Received, dict[str, Any], str]:
    """One server run: (what was exported, the otel-mcp://stats snapshot after the workload, the server log).

    On ``db`` (seeded, the workload only reads it) or on a new seeded SQLite file."""
    receiver = Receiver()
    prefix: tuple[str, ...] = ()
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint(protocol),
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, **(extra_env or {})}
    if launcher == "opentelemetry-instrument":
        instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
        assert instrument is not None
        prefix = (instrument,)
        env.update(OTEL_PYTHON_DISTRO="otel_mcp", OTEL_PYTHON_CONFIGURATOR="otel_mcp")
    name = f"{protocol.replace('/', '-')}-{launcher}"
    try:
        with live_server(tmp, db or _seed(tmp / f"{name}.db"), env, prefix=prefix, name=name) as server:
            await _calls(server.url)
            async with Client(server.url) as client:
                contents = (await client.read_resource("otel-mcp://stats")).contents
            stats = json.loads(getattr(contents[0], "text", "{}"))
            log = server.stop()  # flushes every signal at shutdown
    finally:
        receiver.close()
    return receiver.received, stats, log


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_both_launch_paths_export_the_same_telemetry(tmp_path: Path, protocol: str) -> None:
    own, own_stats, own_log = await _run(tmp_path, protocol, "otel-mcp")
    auto, auto_stats, auto_log = await _run(tmp_path, protocol, "opentelemetry-instrument")
    for log in (own_log, auto_log):
        assert "Traceback" not in log and "Overriding of current" not in log, log[-3000:]
    # the workload's telemetry arrived at all, with our own signals in it
    assert any(name.startswith("tools/call compose_rules") for name in own.spans), sorted(own.spans)
    assert {"mcp.server.operation.duration", "otel_mcp.storage.size", "db.client.operation.duration"} <= set(
        own.metrics), sorted(own.metrics)
    assert any(event == "otel_mcp.request" for _, event, _ in own.logs), own.logs
    # and the same telemetry both ways
    assert dict(auto.spans) == dict(own.spans)
    assert auto.metrics == own.metrics
    assert auto.logs == own.logs
    for stats in (own_stats, auto_stats):
        assert stats["telemetry"]["enabled"] is True
        assert any(key.startswith("tools/call compose_rules") for key in stats["methods"]), stats["methods"]


async def test_both_launch_paths_trace_and_meter_the_postgresql_store(tmp_path: Path, postgres_dsn: str) -> None:
    """``psycopg`` is instrumented on both paths (reads traced on request here: the workload only reads)."""
    _seed(postgres_dsn)
    runs = [await _run(tmp_path, "grpc", launcher, db=postgres_dsn, extra_env={"OTEL_MCP_DB_TRACE_READS": "true"})
            for launcher in ("otel-mcp", "opentelemetry-instrument")]
    for received, stats, log in runs:
        assert "Traceback" not in log, log[-3000:]
        assert {"db.system.name", "db.query.text", "db.namespace"} <= received.spans["SELECT"], dict(received.spans)
        assert "db.client.operation.duration" in received.metrics
        assert stats["database"]["backend"] == "postgresql" and "SELECT rules" in stats["db"], stats["db"]
    assert dict(runs[0][0].spans) == dict(runs[1][0].spans)
    assert runs[0][0].metrics == runs[1][0].metrics
