"""Fixtures for tests against the real Collector, Jaeger and Prometheus.

- ``stack_binaries`` (session): the four executables; installs/builds them when missing
  (minutes the first time), never skips.
- ``stack`` (session): the stack started with ``otel_mcp.stack.up`` in a temporary state
  dir, on free ports (``stack_ports``), with the test overlay (short flush intervals) and
  the low-threshold alerts of
  ``prometheus/tests/e2e-alerts.yaml`` (label ``test="e2e"``), stopped at the end of the session;
  teardown asserts that no process of it is left. Reuse it from any suite (the end-to-end
  test with the real server too) by requesting ``stack``; the endpoints are in
  ``stack.urls`` (``otlp_grpc``, ``prometheus``, ``jaeger_api``...).

Bounded helpers for such tests are in ``stack_helpers.py`` (``wait_for``, ``prom_query``...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stack_helpers import free_port

from otel_mcp.stack import Binaries, StackStatus, down, install, up

ENDPOINT_VARS = (
    "OTELCOL_OTLP_GRPC_ENDPOINT", "OTELCOL_OTLP_HTTP_ENDPOINT", "OTELCOL_HEALTH_ENDPOINT",
    "OTELCOL_PROMETHEUS_ENDPOINT", "JAEGER_OTLP_GRPC_ENDPOINT", "JAEGER_OTLP_HTTP_ENDPOINT",
    "JAEGER_QUERY_HTTP_ENDPOINT", "JAEGER_QUERY_GRPC_ENDPOINT", "JAEGER_HEALTH_ENDPOINT",
    "OTEL_MCP_PROMETHEUS_ADDRESS",
)
PORT_VARS = ("OTELCOL_METRICS_PORT", "JAEGER_METRICS_PORT")
E2E_ALERTS = Path(__file__).resolve().parents[2] / "prometheus" / "tests" / "e2e-alerts.yaml"
STACK_UP_TIMEOUT = 90.0  # seconds per component; generous for a loaded 2-core CI machine


@pytest.fixture(scope="session")
def stack_binaries() -> Binaries:
    return install(progress=True)


@pytest.fixture(scope="session")
def stack_ports() -> Iterator[dict[str, str]]:
    """Every stack endpoint moved to a free loopback port for this session, through the
    environment variables the config files read, so the tests run beside a developer's
    `otel-mcp stack up` (or another test session) on the default ports."""
    ports = {var: f"127.0.0.1:{free_port()}" for var in ENDPOINT_VARS}
    ports |= {var: str(free_port()) for var in PORT_VARS}
    saved = {var: os.environ.get(var) for var in ports}
    os.environ.update(ports)
    try:
        yield ports
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@pytest.fixture(scope="session")
def stack(stack_binaries: Binaries, stack_ports: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackStatus]:
    state_dir: Path = tmp_path_factory.mktemp("stack")
    status = up(state_dir, binaries=stack_binaries, test_overlay=True, die_with_parent=True,
                timeout=STACK_UP_TIMEOUT, extra_rule_files=[E2E_ALERTS])
    pids = [c.pid for c in status.components.values() if c.pid is not None]
    try:
        yield status
    finally:
        down(state_dir)
        left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not left, f"stack processes still running after down(): {left}"
