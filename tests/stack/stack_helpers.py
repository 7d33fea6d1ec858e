"""Bounded helpers for tests against the real stack (imported by the tests in this folder)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from backend_probes import get_json, prom_query, wait_for  # noqa: F401 (this folder's tests import them from here)

from otel_mcp.stack import StackStatus

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def sample_server(stack: StackStatus, work: Path, **otel_env: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``otel-mcp serve --transport http`` on the sample rules in ``work``, exporting to ``stack`` (metrics every
    second), with ``otel_env`` added to its environment; yields its ``/mcp`` URL and that environment."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_MCP_", "OTEL_"))},
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + stack.urls["otlp_grpc"].removeprefix("http://"),
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_MCP_CACHE_DIR": str(work / "cache"),
        "OTEL_MCP_STATE_DIR": str(work / "state"),
        **otel_env,
    }
    db = work / "rules.db"
    subprocess.run([sys.executable, "-m", "otel_mcp.cli", "import", str(REPO / "otel_mcp" / "samples"),
                    "--db", str(db)], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--port", str(port), "--db", str(db)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)

        wait_for(healthy, 60, f"the otel-mcp server's /healthz on port {port}", interval=0.2)
        yield f"http://127.0.0.1:{port}/mcp", env
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def dashboard_panels(namespace: str | None = None) -> list[tuple[str, str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's variables filled in, panel description).

    ``namespace``: look at the server exporting with that ``service.namespace`` only (its job is
    ``<namespace>/otel-mcp``); default: the job ``otel-mcp``. The span-metrics panels select by service name,
    like Jaeger's Monitor tab, whatever the namespace.
    """
    job = f"{namespace}/otel-mcp" if namespace else "otel-mcp"
    panels = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
                expr = re.sub(r"\$\{?job\}?", job, expr)
                panels.append((path.name, panel["title"], expr, panel.get("description", "")))
    return panels


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's variables filled in)."""
    return [(dashboard, title, expr) for dashboard, title, expr, _ in dashboard_panels()]


def dashboard_queries_without_data(prometheus_url: str) -> list[str]:
    """Dashboard panels whose query returns no series now (for end-to-end tests that ran
    a workload first: every panel must show data)."""
    empty = []
    for dashboard, title, expr in dashboard_exprs():
        answer = prom_query(prometheus_url, expr)
        if answer["status"] != "success" or not answer["data"]["result"]:
            empty.append(f"{dashboard} / {title}: {expr}")
    return empty


@contextlib.contextmanager
def http_server(answer: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """A loopback HTTP server whose GET answers ``answer(path)`` (status, body); yields its base URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
