"""A server process for tests: the HTTP server handle and its free port.

Kept out of ``conftest.py`` so test modules can import it by name: several folders have a
``conftest`` module, and ``from conftest import ...`` resolves to whichever was loaded first.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client

SERVER_START_TIMEOUT = 30.0  # seconds; a bound, not a performance assertion


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



@dataclass
class HttpServer:
    """A running ``otel-mcp serve --transport http`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    db: Path
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
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

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


def wait_healthy(server: HttpServer, timeout: float = SERVER_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"otel-mcp exited with code {server.process.returncode} before /healthz answered:\n{server.output()}"
            )
        try:
            status, body = server.get("/healthz", timeout=1.0)
            if status == 200 and body.get("status") == "ok":
                return
            last = f"HTTP {status}: {body}"
        except (OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"otel-mcp did not answer /healthz within {timeout}s ({last}):\n{server.output()}")


