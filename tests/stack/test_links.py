"""The Prometheus pages the demo links to follow the UI that the running Prometheus serves.

Debian's build (the one `stack install` installs, used live in test_ui_e2e.py) answers only
under ``/classic/``; the official image (docker-compose) answers ``/alerts``. Both are played
here by an HTTP server that answers the paths of one of them.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from otel_mcp.stack.links import PROMETHEUS_QUERY, jaeger_links, prometheus_links


@contextmanager
def prometheus_serving(prefix: str) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path.split("?")[0] in {f"{prefix}/alerts", f"{prefix}/graph", f"{prefix}/targets"}
            self.send_response(200 if ok else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("prefix", ["/classic", ""])
def test_prometheus_links_use_the_ui_that_answers(prefix: str) -> None:
    with prometheus_serving(prefix) as url:
        links = prometheus_links(url)
    assert links["Prometheus alerts"] == f"{url}{prefix}/alerts"
    assert links["Prometheus targets"] == f"{url}{prefix}/targets"
    assert links["Prometheus graph"].startswith(f"{url}{prefix}/graph?g0.expr=sum+by+%28mcp_method_name%29")
    assert "rate" in PROMETHEUS_QUERY


def test_jaeger_links_are_ui_routes() -> None:
    links = jaeger_links("http://127.0.0.1:16686/", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert links == {
        "Jaeger trace": "http://127.0.0.1:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736",
        "Jaeger search": "http://127.0.0.1:16686/search?service=otel-mcp",
        "Jaeger monitor": "http://127.0.0.1:16686/monitor",
    }
