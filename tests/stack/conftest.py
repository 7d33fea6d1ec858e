"""Fixtures for tests against the real Collector, Jaeger and Prometheus.

- ``stack_binaries`` (session): the four executables; installs/builds them when missing
  (minutes the first time), never skips.
- ``stack`` (session): the stack started with ``otel_mcp.stack.up`` in a temporary state
  dir with the test overlay (short flush intervals) and the low-threshold alerts of
  ``prometheus/tests/e2e-alerts.yaml`` (label ``test="e2e"``), stopped at the end of the session;
  teardown asserts that no process of it is left. Reuse it from any suite (the end-to-end
  test with the real server too) by requesting ``stack``; the endpoints are in
  ``stack.urls`` (``otlp_grpc``, ``prometheus``, ``jaeger_api``...).

Bounded helpers for such tests are in ``stack_helpers.py`` (``wait_for``, ``prom_query``...).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from otel_mcp.stack import Binaries, StackStatus, down, install, up

E2E_ALERTS = Path(__file__).resolve().parents[2] / "prometheus" / "tests" / "e2e-alerts.yaml"
STACK_UP_TIMEOUT = 90.0  # seconds per component; generous for a loaded 2-core CI machine


@pytest.fixture(scope="session")
def stack_binaries() -> Binaries:
    return install(progress=True)


@pytest.fixture(scope="session")
def stack(stack_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackStatus]:
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
