"""A server process for tests: the HTTP server handle and its free port.

Kept out of ``conftest.py`` so test modules can import it by name: several folders have a
``conftest`` module, and ``from conftest import ...`` resolves to whichever was loaded first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mcp import Client

SERVER_START_TIMEOUT = 30.0  # seconds; a bound, not a performance assertion
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



@dataclass
class HttpServer:
    """A running ``otel-mcp serve --transport http`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    db: Path | str  # a SQLite file, or a PostgreSQL URL
    files_root: Path
    log: Path
    host: str = "127.0.0.1"
    args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, **kwargs)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """GET ``path`` and decode its JSON body; returns (status, body) also for error statuses."""
        return get_json(self.base_url + path, timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        return int(self.process.returncode)


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """GET ``url`` and decode its JSON body; returns (status, body) also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Healthy(Protocol):
    """A process answering ``/healthz`` at ``base_url``: an otel-mcp server, or a load balancer in front of some."""

    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str: ...

    def output(self) -> str: ...

    def stop(self) -> Any: ...


def server_environment(tmp: Path) -> dict[str, str]:
    """Our environment (coverage, OTEL_* pass through) with caches and state kept in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_MCP_")}
    env.update(
        OTEL_MCP_CACHE_DIR=str(tmp / "cache"),
        OTEL_MCP_STATE_DIR=str(tmp / "state"),
        PYTHONUNBUFFERED="1",
    )
    # Telemetry stays on but in-process: a test server must not export to whatever Collector
    # happens to listen on localhost:4317 (another suite's stack), nor wait for it at shutdown.
    for kind in ("TRACES", "METRICS", "LOGS"):
        env.setdefault(f"OTEL_{kind}_EXPORTER", "none")
    return env


def spawn_http_server(
    *extra: str, db: Path | str, files_root: Path, log_dir: Path, env: Mapping[str, str], port: int | None = None
) -> HttpServer:
    """Start ``otel-mcp serve --transport http`` on ``port`` (default a free one) without waiting for it."""
    port = port or free_port()
    log = log_dir / f"http-server-{port}.log"
    args = [
        sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--host", "127.0.0.1",
        "--port", str(port), "--db", str(db), "--files-root", str(files_root), *extra,
    ]
    with log.open("ab") as out:  # appended: a replica restarted on its port keeps one log
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env), cwd=REPO_ROOT,
        )
    return HttpServer(process, port, db, files_root, log, args=args)


def wait_healthy(server: Healthy, timeout: float = SERVER_START_TIMEOUT, name: str = "otel-mcp") -> None:
    """Wait (bounded) until ``server`` answers ``/healthz`` with ``{"status": "ok"}``; stop it if it never does."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {server.process.returncode} before /healthz answered:\n{server.output()}"
            )
        try:
            status, body = get_json(server.base_url + "/healthz", timeout=1.0)
            if status == 200 and body.get("status") == "ok":
                return
            last = f"HTTP {status}: {body}"
        except (OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not answer /healthz within {timeout}s ({last}):\n{server.output()}")
