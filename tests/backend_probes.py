"""Bounded probes of real backends (Jaeger's and Prometheus's HTTP APIs) for the end-to-end tests.

Kept at the top of ``tests/`` so every folder's tests can import it by name (``tests/stack/``,
``tests/scaleout/``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

HTTP_TIMEOUT = 5.0


def get_json(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(probe: Callable[[], T | None], timeout: float, what: str | Callable[[], str],
             interval: float = 1.0) -> T:
    """Call ``probe`` until it returns something truthy; fail the test after ``timeout`` s.

    ``what`` names the awaited thing in the failure; a callable is called then, so it can
    show the last answer.
    """
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
            described = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {described} (last error: {last_error!r})")
        time.sleep(interval)


def prom_query(prometheus_url: str, expr: str) -> dict[str, Any]:
    """The JSON answer of Prometheus's instant query API for ``expr``."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    doc: dict[str, Any] = get_json(url)
    return doc
