"""The pages a person opens to see otel-mcp's telemetry: Jaeger's UI and Prometheus's UI.

Prometheus's pages move between builds: Debian's package serves only the classic UI
(``/classic/alerts``), the official image the React UI (``/alerts``), so the prefix is
asked of the running Prometheus instead of assumed.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

SERVICE = "otel-mcp"
# Requests per second by MCP method, from the server's semconv duration histogram.
PROMETHEUS_QUERY = "sum by (mcp_method_name) (rate(mcp_server_operation_duration_seconds_count[1m]))"
_PROBE_TIMEOUT = 3.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def prometheus_ui_prefix(prometheus_url: str) -> str:
    """``""`` when Prometheus serves its React UI, ``"/classic"`` for the classic one only."""
    if _answers(f"{prometheus_url}/alerts"):
        return ""
    return "/classic" if _answers(f"{prometheus_url}/classic/alerts") else ""


def prometheus_links(prometheus_url: str, query: str = PROMETHEUS_QUERY) -> dict[str, str]:
    """The graph page with ``query`` ready, the alerts page and the targets page."""
    base = prometheus_url.rstrip("/") + prometheus_ui_prefix(prometheus_url.rstrip("/"))
    graph = urllib.parse.urlencode({"g0.expr": query, "g0.tab": "0", "g0.range_input": "15m"})
    return {
        "Prometheus graph": f"{base}/graph?{graph}",
        "Prometheus alerts": f"{base}/alerts",
        "Prometheus targets": f"{base}/targets",
    }


def jaeger_links(jaeger_url: str, trace_id: str | None = None, service: str = SERVICE) -> dict[str, str]:
    """Jaeger UI routes: one trace, the search page for ``service``, the Monitor tab."""
    base = jaeger_url.rstrip("/")
    links = {"Jaeger trace": f"{base}/trace/{trace_id}"} if trace_id else {}
    links["Jaeger search"] = f"{base}/search?{urllib.parse.urlencode({'service': service})}"
    links["Jaeger monitor"] = f"{base}/monitor"
    return links
