"""The Prometheus pages the demo links to follow the UI that the running Prometheus serves.

Debian's build (the one `stack install` installs, used live in test_ui_e2e.py) answers only
under ``/classic/``; the official image (docker-compose) answers ``/alerts``. Both are played
here by an HTTP server that answers the paths of one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from stack_helpers import http_server

from otel_mcp.stack.links import PROMETHEUS_QUERY, jaeger_links, prometheus_links


@contextmanager
def prometheus_serving(prefix: str) -> Iterator[str]:
    pages = {f"{prefix}/alerts", f"{prefix}/graph", f"{prefix}/targets"}
    with http_server(lambda path: (200 if path.split("?")[0] in pages else 404, b"")) as url:
        yield url


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
