"""Versions, ports and directories of the observability stack, in one table.

Every port binds 127.0.0.1. The environment variables are the ones the config files read
(``${env:VAR:-default}``), so overriding one moves both the process and the health check.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs

# Versions. Bump together with collector/builder-config.yaml (core v0.165.0 / v1.71.0,
# contrib v0.165.1 are one release).
BUILDER_VERSION = "v0.165.0"
COLLECTOR_VERSION = "v0.165.0"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.75.0"  # the Go module's tag; it is Jaeger v2.12
PROMETHEUS_DEB = "prometheus"  # Debian bookworm ships 2.42 with promtool
POSTGRESQL_DEB = "postgresql"  # Debian's "supported version" meta-package (15 on bookworm)
POSTGRESQL_LIB_DIR = "/usr/lib/postgresql"  # Debian keeps each major's server binaries in <major>/bin
HAPROXY_DEB = "haproxy"

COLLECTOR_BINARY = "otelcol-otel-mcp"

# The scale-out tiers' Collector (agent and gateways, collector/scaleout/): a distribution of its own
# at one older release, the newest at which the Go module proxy serves the contrib loadbalancing
# exporter (core v0.161.0 / v1.67.0, contrib v0.161.0). Bump together with its builder-config.yaml.
SCALEOUT_BUILDER_VERSION = "v0.161.0"
SCALEOUT_COLLECTOR_VERSION = "v0.161.0"
SCALEOUT_COLLECTOR_BINARY = "otelcol-otel-mcp-scaleout"

# Bounded waits, in seconds.
HEALTH_TIMEOUT = 60.0  # from spawn to healthy, per component
STOP_TIMEOUT = 10.0  # SIGTERM grace before SIGKILL
HTTP_TIMEOUT = 2.0  # one health probe


def env_endpoint(var: str, default: str) -> str:
    """Return ``host:port`` from ``var`` (default ``default``), as the config files do."""
    return os.environ.get(var) or default


def collector_health_url() -> str:
    return f"http://{env_endpoint('OTELCOL_HEALTH_ENDPOINT', '127.0.0.1:13133')}/"


def collector_metrics_url() -> str:
    return f"http://{collector_metrics_endpoint()}/metrics"


def collector_prometheus_exporter_url() -> str:
    return f"http://{collector_prometheus_exporter_endpoint()}/metrics"


def otlp_grpc_endpoint() -> str:
    return env_endpoint("OTELCOL_OTLP_GRPC_ENDPOINT", "127.0.0.1:4317")


def otlp_http_endpoint() -> str:
    return env_endpoint("OTELCOL_OTLP_HTTP_ENDPOINT", "127.0.0.1:4318")


def collector_metrics_endpoint() -> str:
    host = env_endpoint("OTELCOL_METRICS_HOST", "127.0.0.1")
    return f"{host}:{env_endpoint('OTELCOL_METRICS_PORT', '8888')}"


def collector_prometheus_exporter_endpoint() -> str:
    return env_endpoint("OTELCOL_PROMETHEUS_ENDPOINT", "127.0.0.1:8889")


def jaeger_otlp_grpc_endpoint() -> str:
    return env_endpoint("JAEGER_OTLP_GRPC_ENDPOINT", "127.0.0.1:14317")


def jaeger_metrics_endpoint() -> str:
    host = env_endpoint("JAEGER_METRICS_HOST", "127.0.0.1")
    return f"{host}:{env_endpoint('JAEGER_METRICS_PORT', '14269')}"


def jaeger_health_url() -> str:
    return f"http://{env_endpoint('JAEGER_HEALTH_ENDPOINT', '127.0.0.1:14133')}/status"


def jaeger_query_url() -> str:
    return f"http://{env_endpoint('JAEGER_QUERY_HTTP_ENDPOINT', '127.0.0.1:16686')}"


def prometheus_listen_address() -> str:
    return env_endpoint("OTEL_MCP_PROMETHEUS_ADDRESS", "127.0.0.1:9090")


def prometheus_url() -> str:
    return f"http://{prometheus_listen_address()}"


def cache_dir() -> Path:
    """Binary cache: ``$OTEL_MCP_CACHE_DIR`` or ``~/.cache/otel-mcp/bin``."""
    override = os.environ.get("OTEL_MCP_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("otel-mcp")) / "bin"


def default_state_dir() -> Path:
    """Logs, data and pid files: ``$OTEL_MCP_STATE_DIR`` or ``~/.local/state/otel-mcp/stack``."""
    override = os.environ.get("OTEL_MCP_STATE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_state_dir("otel-mcp")) / "stack"


def config_root() -> Path:
    """The folder holding ``collector/``, ``jaeger/``, ``prometheus/`` and ``grafana/``.

    ``$OTEL_MCP_STACK_CONFIG_DIR`` if set; otherwise the copy an installed wheel carries in this package
    (``config/``, copied in by setup.py at build time), then the source checkout this package was imported
    from (an editable install), then the current directory.

    :raises FileNotFoundError: when no candidate holds ``collector/otelcol-config.yaml``
    """
    override = os.environ.get("OTEL_MCP_STACK_CONFIG_DIR")
    candidates = [Path(override).expanduser()] if override else []
    packaged = resources.files("otel_mcp.stack") / "config"
    if isinstance(packaged, Path):  # on disk, as pip installs it: the stack's processes are given its paths
        candidates.append(packaged)
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "collector" / "otelcol-config.yaml").is_file():
            return root
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"stack config files (collector/otelcol-config.yaml) not found in: {tried}; "
        "set OTEL_MCP_STACK_CONFIG_DIR to a folder holding collector/, jaeger/ and prometheus/"
    )
