"""Raw-wire helpers for the reliability suite (imported by its tests as ``relwire``).

The shared fixtures (``http_server_factory``, ``stdio_params``, ``server_env``,
``db_path``, ``files_root``) live in ``tests/conftest.py``; these add clients that
speak bytes rather than MCP, so that malformed input can reach the server:

- ``RawHttp``: one keep-alive ``http.client`` connection to 127.0.0.1, an MCP
  session it can open, and replies decoded from JSON or SSE;
- ``RawStdio`` / ``raw_stdio``: a server subprocess whose stdin/stdout are pipes
  we write lines to and read JSON lines from, every wait bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = "2025-06-18"
ACCEPT = "application/json, text/event-stream"
REPLY_TIMEOUT = 20.0  # seconds: a bound on every wait, not a performance assertion
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', '.py", line ')


def initialize_message(request_id: int | str = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def assert_no_traceback(text: str) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, f"traceback text found: {text[:2000]}"


def is_jsonrpc_error(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "id" not in message:
        return False
    error = message.get("error")
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), int)
        and not isinstance(error.get("code"), bool)
        and isinstance(error.get("message"), str)
        and "result" not in message
    )


def is_jsonrpc_response(message: Any) -> bool:
    if is_jsonrpc_error(message):
        return True
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and "result" in message
        and "error" not in message
        and isinstance(message.get("id"), str | int)
    )


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[Any] = field(default_factory=list)  # decoded JSON-RPC messages (JSON body or SSE events)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def decode_body(content_type: str, body: bytes) -> list[Any]:
    if not body:
        return []
    if content_type.startswith("text/event-stream"):
        out = []
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith("data:") and line[5:].strip():
                out.append(json.loads(line[5:].strip()))
        return out
    return [json.loads(body)]


class RawHttp:
    """A keep-alive connection to the server's ``/mcp`` (reconnects when the server closes it)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = REPLY_TIMEOUT) -> None:
        self.port = port
        self.host = host
        self.timeout = timeout
        self.session_id: str | None = None
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> HttpReply:
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                resp = conn.getresponse()
                data = resp.read()
                reply_headers = {k.lower(): v for k, v in resp.getheaders()}
                if reply_headers.get("connection", "").lower() == "close":
                    self.close()
                return HttpReply(resp.status, reply_headers, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(
        self, payload: bytes | Any, headers: Mapping[str, str] | None = None, session: bool = True
    ) -> HttpReply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", "Accept": ACCEPT}
        if session and self.session_id:
            all_headers["Mcp-Session-Id"] = self.session_id
            all_headers["Mcp-Protocol-Version"] = PROTOCOL
        all_headers.update(headers or {})
        reply = self.request("POST", "/mcp", body, all_headers)
        reply.messages = decode_body(reply.headers.get("content-type", ""), reply.body)
        return reply

    def open_session(self, headers: Mapping[str, str] | None = None) -> HttpReply:
        reply = self.post(initialize_message(), headers=headers, session=False)
        assert reply.status == 200, f"initialize failed: {reply.status} {reply.text[:500]}"
        self.session_id = reply.headers.get("mcp-session-id")
        assert self.session_id
        ack = self.post(INITIALIZED, headers=headers)
        assert ack.status == 202, f"initialized notification: {ack.status} {ack.text[:500]}"
        return reply


class RawStdio:
    """``otel-mcp serve`` (stdio) with pipes: write lines, read JSON lines, every read bounded."""

    def __init__(self, args: list[str], env: Mapping[str, str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=dict(env), cwd=REPO_ROOT
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_bytes(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: Any) -> None:
        self.send_bytes(json.dumps(message).encode() + b"\n")

    def receive(self, timeout: float = REPLY_TIMEOUT) -> Any:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise EOFError(f"server closed stdout; stderr:\n{self.stderr()[-3000:]}")
        return json.loads(line)

    def receive_raw(self, timeout: float = REPLY_TIMEOUT) -> bytes | None:
        return self.lines.get(timeout=timeout)

    def request(self, message: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> Any:
        """Send a request and return the reply with its id (other messages in between are skipped)."""
        self.send(message)
        while True:
            reply = self.receive(timeout)
            if isinstance(reply, dict) and reply.get("id") == message["id"] and "method" not in reply:
                return reply

    def initialize(self) -> Any:
        reply = self.request(initialize_message("init"))
        self.send(INITIALIZED)
        return reply

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self, timeout: float = 15.0) -> int:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        self._stderr.close()
        return int(self.process.returncode)


def open_get_stream(port: int, session_id: str, timeout: float = 30.0) -> http.client.HTTPResponse:
    """A session's standalone SSE stream (``GET /mcp``), its response headers read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": session_id,
                                         "Mcp-Protocol-Version": PROTOCOL})
    return conn.getresponse()


def read_in_background(response: http.client.HTTPResponse) -> tuple[threading.Thread, dict[str, object]]:
    """Read ``response`` to its end in a thread: ``outcome["body"]``, or ``outcome["error"]`` if it was cut."""
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["body"] = response.read()
        except Exception as exc:
            outcome["error"] = repr(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, outcome


def env_without_otel_mcp() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_MCP_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp: Path) -> dict[str, str]:
    env = env_without_otel_mcp()
    env.update(OTEL_MCP_CACHE_DIR=str(tmp / "cache"), OTEL_MCP_STATE_DIR=str(tmp / "state"), PYTHONUNBUFFERED="1")
    return env


@dataclass
class HttpProc:
    """An ``otel-mcp serve --transport http`` subprocess (for module-scoped servers)."""

    process: subprocess.Popen[bytes]
    port: int
    db: Path
    files_root: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def raw(self) -> RawHttp:
        return RawHttp(self.port)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        return int(self.process.returncode)


def start_http(
    tmp: Path, *extra: str, env: Mapping[str, str] | None = None, db: Path | None = None, timeout: float = 30.0,
    prefix: Sequence[str] = (),
) -> HttpProc:
    """Start an HTTP server in ``tmp`` and wait (bounded) until ``/healthz`` answers.

    :param prefix: a command the server runs under (``prlimit ...``)
    """
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db = db or tmp / "rules.db"
    root = tmp / "files"
    root.mkdir(exist_ok=True)
    log = tmp / f"http-{port}.log"
    args = [
        *prefix, sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--host", "127.0.0.1",
        "--port", str(port), "--db", str(db), "--files-root", str(root), *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**base_env(tmp), **(env or {})}, cwd=REPO_ROOT,
        )
    server = HttpProc(process, port, db, root, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as resp:
                if resp.status == 200:
                    return server
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become healthy within {timeout}s:\n{server.output()}")


class BlackHole:
    """A 'slow' backend: accepts OTLP connections and reads them, but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setblocking(False)
            self.held.append(conn)  # kept open, never read from or answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
