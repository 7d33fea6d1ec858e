"""``otel-mcp traces`` when Jaeger is not there: one line saying so, exit code 1, no traceback.

The views of real traces are tested against the real stack in tests/stack/test_ui_e2e.py.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from stack_helpers import http_server


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_mcp.cli", "traces", *args], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize("command", [[], ["show", "0123456789abcdef0123456789abcdef"]])
def test_jaeger_down_is_one_line(closed_port: int, command: list[str]) -> None:
    run = _run(*command, "--jaeger-url", f"http://127.0.0.1:{closed_port}")
    assert run.returncode == 1 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"Jaeger is not answering at http://127.0.0.1:{closed_port}" in lines[0]
    assert "otel-mcp stack up" in lines[0]


@pytest.fixture
def not_jaeger() -> Iterator[str]:
    """Answers every path with 404 'No traces found', as Jaeger's API v3 does for an unknown trace."""
    with http_server(lambda path: (404, b'{"error":{"httpCode":404,"message":"No traces found"}}')) as url:
        yield url


def test_no_traces_is_said_plainly(not_jaeger: str) -> None:
    listed = _run("--jaeger-url", not_jaeger, "--since", "5")
    assert listed.returncode == 0 and listed.stdout.strip() == "no traces of otel-mcp in the last 5 minutes"
    shown = _run("show", "0123456789abcdef0123456789abcdef", "--jaeger-url", not_jaeger)
    assert shown.returncode == 1
    assert shown.stderr.strip() == "otel-mcp traces show: no trace 0123456789abcdef0123456789abcdef in Jaeger"
