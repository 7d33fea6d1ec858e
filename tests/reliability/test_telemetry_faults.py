"""Telemetry backend faults with the real Collector binary (``otel_mcp.stack``) on a private port.

One HTTP server exports OTLP/gRPC to a port where, in turn, nothing listens (down from the start), a
Collector listens, the Collector is SIGKILLed in the middle of a burst, and a new Collector listens again:

- every MCP request succeeds in every phase;
- latency with the Collector down is comparable to latency with it up (a ratio, generous): the export
  never runs on the request path;
- the span queue is bounded (``OTEL_BSP_MAX_QUEUE_SIZE``): spans beyond it are dropped and counted
  (``telemetry.dropped`` in ``otel-mcp://stats``), RSS stays bounded over the outage;
- the failure is logged once per outage, not per export (no log flood on stderr);
- export resumes by itself: spans of requests made after the restart reach the new Collector
  (its debug exporter), with no action on the server;
- SIGTERM while the Collector is down still exits promptly (the exit flush is bounded).

The Collector runs with a minimal config (OTLP receiver -> debug exporter, internal telemetry off) on
free ports, so it never clashes with the stack of ``tests/stack`` on the default ports.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from relwire import BlackHole, RawHttp, free_port, start_http

from otel_mcp.stack import Binaries, install

BOUND = 60.0  # seconds: a bound on every wait, not a performance assertion
QUEUE = 128  # OTEL_BSP_MAX_QUEUE_SIZE for the server under test
COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
    metrics: {{receivers: [otlp], exporters: [debug]}}
    logs: {{receivers: [otlp], exporters: [debug]}}
"""


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(predicate: Any, what: str, timeout: float = BOUND, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Collector:
    """The real ``otelcol-otel-mcp`` binary on ``port``, its debug output in a log file per start."""

    def __init__(self, binary: Path, port: int, tmp: Path) -> None:
        self.binary = binary
        self.port = port
        self.tmp = tmp
        self.config = tmp / "otelcol.yaml"
        self.config.write_text(COLLECTOR_CONFIG.format(port=port))
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.tmp / f"otelcol-{self.starts}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([str(self.binary), "--config", str(self.config)], stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: listening(self.port) or self.process is None or self.process.poll() is not None,
                 "the Collector to listen")
        assert self.process.poll() is None, self.output()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=BOUND)
        wait_for(lambda: not listening(self.port), "the Collector's port to close")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""

    def spans(self, name: str) -> int:
        """Spans named ``name`` this Collector instance received (its debug exporter's lines)."""
        return sum(1 for line in self.output().splitlines() if line.strip() == f"Name           : {name}")


@pytest.fixture(scope="module")
def collector_binary() -> Path:
    binaries: Binaries = install(progress=False)
    return binaries.otelcol


@pytest.fixture
def collector(collector_binary: Path, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(collector_binary, free_port(), tmp_path)
    try:
        yield c
    finally:
        if c.process is not None and c.process.poll() is None:
            c.process.kill()
            c.process.wait(timeout=BOUND)


def call(request_id: int, tool: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}


class Workload:
    """Sequential tool calls over one keep-alive session; each one's latency kept."""

    def __init__(self, port: int) -> None:
        self.raw = RawHttp(port)
        self.raw.open_session()
        self.next_id = 10

    def run(self, n: int, during: Any = None) -> list[float]:
        latencies = []
        for i in range(n):
            if during is not None and i == n // 2:
                during()
            self.next_id += 1
            tool = ("compose_rules", "list_rules", "search_rules")[i % 3]
            args = {"query": "style"} if tool == "search_rules" else {}
            started = time.perf_counter()
            reply = self.raw.post(call(self.next_id, tool, **args))
            latencies.append(time.perf_counter() - started)
            assert reply.status == 200, reply.text
            message = reply.messages[-1]
            assert "result" in message and not message["result"].get("isError"), message
        return latencies

    def stats(self) -> dict[str, Any]:
        self.next_id += 1
        reply = self.raw.post({"jsonrpc": "2.0", "id": self.next_id, "method": "resources/read",
                               "params": {"uri": "otel-mcp://stats"}})
        return dict(json.loads(reply.messages[-1]["result"]["contents"][0]["text"]))


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def exporter_error_lines(log: str) -> int:
    return sum(1 for line in log.splitlines() if line.startswith("WARNING opentelemetry.")
               or line.startswith("ERROR opentelemetry."))


def test_collector_down_killed_and_restarted(collector: Collector, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",  # seconds per export attempt; the default (10) only slows the test
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_MCP_DB_TRACE_READS": "true",  # more spans per request: the queue overflows sooner
    }
    server = start_http(tmp_path / "server", env=env)
    proc = psutil.Process(server.process.pid)
    try:
        work = Workload(server.port)
        work.run(30)  # warm-up (imports, caches, first allocations)

        # (a) down from the start: requests succeed, spans beyond the queue are dropped and counted.
        rss_start = proc.memory_info().rss
        down = work.run(300)
        rss_mid = proc.memory_info().rss
        down += work.run(300)
        rss_end = proc.memory_info().rss
        dropped = work.stats()["telemetry"]["dropped"]
        assert dropped.get("traces", {}).get("export_failed", 0) + dropped.get("traces", {}).get("queue_full", 0) > 0
        assert dropped["traces"].get("queue_full", 0) > 0, dropped  # the queue limit is honoured, not grown
        # Memory is bounded: the second 300 requests of the outage grow RSS by far less than a queue of
        # every span would (a few KB each); 8 MB is generous for allocator noise.
        assert rss_end - rss_mid < 8 * 2**20, (rss_start, rss_mid, rss_end)

        # The Collector comes up: export resumes by itself.
        collector.start()
        wait_for(lambda: work.run(5) is not None and collector.spans("tools/call compose_rules") > 0,
                 "spans in the first Collector", interval=0.5)
        up = work.run(300)

        # (b) killed in the middle of a burst: every request still succeeds.
        killed = work.run(300, during=collector.kill)

        # (c) restarted: export resumes by itself, in the new instance.
        collector.start()
        wait_for(lambda: work.run(5) is not None and collector.spans("tools/call compose_rules") > 0,
                 "spans in the restarted Collector", interval=0.5)
        assert collector.starts == 2

        # Latency: the export is not on the request path (ratios against the Collector-up phase, generous).
        for phase, latencies in (("down", down), ("killed", killed)):
            assert statistics.median(latencies) < 3 * statistics.median(up) + 0.005, (phase, statistics.median(up))
            assert p(latencies, 0.95) < 5 * p(up, 0.95) + 0.02, (phase, p(latencies, 0.95), p(up, 0.95))
            # An export attempt (2 s timeout) on the request path would show as a request that long.
            assert max(latencies) < 1.0 + 20 * statistics.median(up), (phase, max(latencies))

        print(f"median ms down/up/killed: {statistics.median(down) * 1000:.2f} / {statistics.median(up) * 1000:.2f}"
              f" / {statistics.median(killed) * 1000:.2f}; p95 {p(down, 0.95) * 1000:.2f} / {p(up, 0.95) * 1000:.2f}"
              f" / {p(killed, 0.95) * 1000:.2f}; RSS MB {rss_start / 2**20:.1f} {rss_mid / 2**20:.1f} "
              f"{rss_end / 2**20:.1f}; dropped {work.stats()['telemetry']['dropped']}")
        # Logged once per outage: two outages, three signals, a start and a recovery line per signal.
        log = server.output()
        assert log.count("telemetry export failing") <= 6, log[-3000:]
        assert log.count("telemetry queue full") <= 2, log[-3000:]
        assert exporter_error_lines(log) <= 12, log[-3000:]
        assert "telemetry export recovered" in log
    finally:
        # SIGTERM with the Collector down again: the bounded exit flush lets it stop cleanly.
        collector.kill()
        code = server.stop()  # SIGTERM; SIGKILL (code -9) if it does not exit within the stop bound
    assert code == 0, server.output()[-3000:]
    assert "Traceback" not in server.output()


def test_a_backend_that_never_answers_does_not_slow_requests(tmp_path: Path) -> None:
    hole = BlackHole()
    slow = start_http(tmp_path / "slow", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE),
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    })
    off = start_http(tmp_path / "off", env={"OTEL_SDK_DISABLED": "true"})
    try:
        slow_work, off_work = Workload(slow.port), Workload(off.port)
        slow_work.run(30)
        off_work.run(30)
        # interleaved, so machine noise hits both alike
        slow_latencies: list[float] = []
        off_latencies: list[float] = []
        for _ in range(4):
            slow_latencies += slow_work.run(75)
            off_latencies += off_work.run(75)
        assert hole.held, "the exporter never reached the black hole"
        assert statistics.median(slow_latencies) < 3 * statistics.median(off_latencies) + 0.005
        # an export stuck on the request path would show up as requests as long as its 2 s timeout
        assert max(slow_latencies) < 1.0 + 20 * statistics.median(off_latencies)
        dropped = slow_work.stats()["telemetry"]["dropped"]
        assert sum(sum(kinds.values()) for kinds in dropped.values()) > 0, dropped
    finally:
        slow_code, off_code = slow.stop(), off.stop()
        hole.close()
    assert slow_code == 0 and off_code == 0, slow.output()[-3000:]
