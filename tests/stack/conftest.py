"""Fixtures for tests against the real Collector, Jaeger and Prometheus.

- ``stack_binaries`` (session): the four executables; installs/builds them when missing
  (minutes the first time), never skips.
- ``stack`` (session): the stack started with ``otel_mcp.stack.up`` in a temporary state
  dir with the test overlay (short flush intervals), stopped at the end of the session;
  teardown asserts that no process of it is left. Reuse it from any suite (the end-to-end
  test with the real server too) by requesting ``stack``; the endpoints are in
  ``stack.urls`` (``otlp_grpc``, ``prometheus``, ``jaeger_api``...).
- ``prom_query(expr)``, ``wait_for(fn, timeout, what)``, ``get_json(url)``: bounded helpers.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from otel_mcp.stack import Binaries, StackStatus, down, install, up

T = TypeVar("T")

STACK_UP_TIMEOUT = 90.0  # seconds per component; generous for a loaded 2-core CI machine
HTTP_TIMEOUT = 5.0


def get_json(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    """Call ``probe`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # a backend still starting answers errors; keep the last
            last_error = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


def prom_query(prometheus_url: str, expr: str) -> dict[str, Any]:
    """The JSON answer of Prometheus's instant query API for ``expr``."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    doc: dict[str, Any] = get_json(url)
    return doc


@pytest.fixture(scope="session")
def stack_binaries() -> Binaries:
    return install(progress=True)


@pytest.fixture(scope="session")
def stack(stack_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackStatus]:
    state_dir: Path = tmp_path_factory.mktemp("stack")
    status = up(state_dir, binaries=stack_binaries, test_overlay=True, die_with_parent=True,
                timeout=STACK_UP_TIMEOUT)
    pids = [c.pid for c in status.components.values() if c.pid is not None]
    try:
        yield status
    finally:
        down(state_dir)
        left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not left, f"stack processes still running after down(): {left}"
