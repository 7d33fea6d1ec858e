"""The server under test, in its own process, and what the load generator watches of it.

``ServerProcess`` starts ``otel-mcp serve --transport http`` (or the raw-SDK echo
reference, ``otel_mcp.loadtest.loadgen.echo_server``) on a free loopback port, waits for
``/healthz``, and stops it. ``ProcessSampler`` samples the RSS, CPU and open fds
of a set of processes every ``interval`` seconds from a thread. ``OtlpSink`` is
a loopback OTLP/HTTP endpoint that accepts and discards exports, so
"telemetry on" pays the real serialization and export cost without a Collector.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# Telemetry on as deployed, kept in-process: the scenarios read the server's own figures from /metrics.
IN_PROCESS_TELEMETRY = {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
                        "OTEL_METRICS_EXPORTER": "none"}


def telemetry_env(on: bool, otlp_endpoint: str | None = None) -> dict[str, str]:
    """OTEL_* variables for telemetry off (``OTEL_SDK_DISABLED``) or on (OTLP/HTTP to ``otlp_endpoint``)."""
    if not on:
        return {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none"}
    env = {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "parentbased_always_on",
           "OTEL_SERVICE_NAME": "otel-mcp-perf",
           "OTEL_MCP_METRICS_ENDPOINT": "false"}  # measure the exporters, not an extra /metrics reader
    if otlp_endpoint:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    return env


@dataclass
class ServerProcess:
    """One HTTP server process on loopback. ``kind`` is ``otel-mcp`` or ``echo`` (the raw-SDK reference)."""

    db: Path | str | None = None  # a SQLite file or a PostgreSQL URL
    kind: str = "otel-mcp"
    env: Mapping[str, str] = field(default_factory=dict)
    cache: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/mcp"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        if self.kind == "echo":
            return [sys.executable, "-m", "otel_mcp.loadtest.loadgen.echo_server", "--port", str(self.port)]
        assert self.db is not None
        return [sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--host", LOOPBACK,
                "--port", str(self.port), "--db", str(self.db), "--log-level", "WARNING"]

    def base_env(self) -> dict[str, str]:
        assert self.workdir is not None
        env = dict(os.environ)
        env.update(
            OTEL_MCP_CACHE="true" if self.cache else "false",
            OTEL_MCP_CACHE_DIR=str(self.workdir / "cache"),
            OTEL_MCP_STATE_DIR=str(self.workdir / "state"),
            OTEL_MCP_FILES_ROOT=str(self.workdir),
            OTEL_MCP_MAX_SESSIONS="10000",
            OTEL_MCP_METRICS_ENDPOINT="true",  # the scenarios read cache hit rate and DB latency back from it
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        return env

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-mcp-perf-"))
        self.port = self.port or free_port()
        self.log_path = self.workdir / "server.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.command(), env=self.base_env(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} server not healthy after {timeout}s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except (urllib.error.URLError, OSError):
            return 0, ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ProcessSampler:
    """Samples RSS (MiB), CPU (% of one core) and open fds of some processes from a background thread."""

    pids: list[int]
    interval: float = 0.5
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0

    def add(self, pid: int) -> None:
        self.pids.append(pid)

    def _sample_once(self, procs: dict[int, psutil.Process]) -> None:
        rss = cpu = fds = threads = 0.0
        for pid in list(self.pids):
            proc = procs.get(pid)
            try:
                if proc is None:
                    proc = procs[pid] = psutil.Process(pid)
                    proc.cpu_percent(None)
                with proc.oneshot():
                    rss += proc.memory_info().rss / (1024 * 1024)
                    cpu += proc.cpu_percent(None)
                    fds += proc.num_fds()
                    threads += proc.num_threads()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.samples.append({"t": round(time.monotonic() - self._t0, 3), "rss_mb": round(rss, 2),
                             "cpu_pct": round(cpu, 1), "fds": fds, "threads": threads})

    def _loop(self) -> None:
        procs: dict[int, psutil.Process] = {}
        while not self._stop.wait(self.interval):
            self._sample_once(procs)

    def start(self, t0: float | None = None) -> ProcessSampler:
        self._t0 = time.monotonic() if t0 is None else t0
        self._thread = threading.Thread(target=self._loop, name="perf-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.samples

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        rss = [s["rss_mb"] for s in self.samples]
        cpu = [s["cpu_pct"] for s in self.samples]
        return {"rss_start_mb": rss[0], "rss_end_mb": rss[-1], "rss_max_mb": max(rss),
                "cpu_mean_pct": round(sum(cpu) / len(cpu), 1), "fds_start": self.samples[0]["fds"],
                "fds_end": self.samples[-1]["fds"], "fds_max": max(s["fds"] for s in self.samples)}


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.received[self.path] = self.server.received.get(self.path, 0) + 1
        self.server.bytes += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    received: dict[str, int]
    bytes: int


@contextlib.contextmanager
def otlp_sink() -> Iterator[_Sink]:
    """A loopback OTLP/HTTP endpoint that accepts every export (``sink.received``: posts by path)."""
    sink = _Sink((LOOPBACK, 0), _SinkHandler)
    sink.received, sink.bytes = {}, 0
    thread = threading.Thread(target=sink.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.shutdown()
        sink.server_close()


def sink_endpoint(sink: _Sink) -> str:
    return f"http://{LOOPBACK}:{sink.server_address[1]}"
