"""Structured JSON performance logs and performance alerts.

One JSON line per MCP request (``event: request``) and per slow operation
(``event: slow_query``, ``event: alert``), each with ``trace_id``/``span_id``
of the span it belongs to, written to a size-rotated file and, when an OTLP
logs exporter is configured, emitted as OTel log records too. Never a rule
body, an argument value or a secret: method, target name, duration, outcome.

The request path only builds a tuple and appends it to a deque (which wakes no
thread: no futex and no thread switch per request); a daemon thread wakes every
``flush_interval`` (``WRITE_INTERVAL`` by default; or once ``BATCH`` lines wait, or
on ``flush``), takes what has queued up (up to ``BATCH`` lines at a time), formats it
(request lines from text kept per request shape, not ``json.dumps`` of a dict),
writes the batch with one ``write`` and rotates by its own byte count (no per-line
``tell``/flush), and exports, so the event loop never waits for the disk or the
exporter. When the queue is full (``MAX_QUEUE`` lines
behind) lines are dropped and counted rather than blocking.

Alerts: a slow request, a slow query, a low cache hit rate or a high RSS
crosses a configured threshold -> ``otel_mcp.alerts{alert}`` is incremented
and a WARNING is logged (at most once per alert per ``ALERT_LOG_INTERVAL``,
with the number of crossings since the last one).

Usage
-----
.. code-block:: python

    perf = PerfLog(Path("perf.log"), max_bytes=10_000_000, backup_count=5)
    perf.start()
    perf.request("tools/call", "compose_rules", 0.0012, None, "pipe")
    perf.close()

Configuration
-------------
Settings ``perf_log`` / ``perf_log_max_bytes`` / ``perf_log_backups`` / ``perf_log_flush_ms`` and the
``alert_*`` thresholds.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from opentelemetry import trace
from opentelemetry._logs import Logger as OtelLogger
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import get_meter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_mcp.telemetry import names
from otel_mcp.telemetry.state import current_span
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger("otel_mcp.perf")
alert_log = logging.getLogger("otel_mcp.perf.alerts")

MAX_QUEUE = 10_000  # lines waiting for the writer before new ones are dropped
BATCH = 64  # lines formatted and written together; as many waiting wake the writer before its interval
WRITE_INTERVAL = 0.25  # seconds between two writes when fewer than BATCH lines wait
ALERT_LOG_INTERVAL = 60.0  # seconds between two WARNING lines for the same alert
REQUEST_EVENT = "otel_mcp.request"  # event_name of the per-request OTel log record
_STOP: Final = object()


@dataclass(frozen=True)
class Thresholds:
    """The ``alert_*`` settings (defaults in ``otel_mcp.config``), in seconds, ratios and bytes.

    :param slow_request_s: a request slower than this is an alert
    :param slow_query_s: a statement slower than this
    :param min_cache_hit_ratio: below this over a check interval with enough lookups
    :param max_rss_bytes: resident memory above this
    """

    slow_request_s: float
    slow_query_s: float
    min_cache_hit_ratio: float
    max_rss_bytes: int
    min_cache_lookups: int = 20  # lookups in an interval before the hit ratio means anything


class PerfLog:
    """:param path: JSON-lines file (None: no file)
    :param max_bytes: rotate when the file reaches this size (default 10 MB)
    :param backup_count: rotated files kept (default 5)
    :param otel_logger: OTel logger to emit records to as well (default none)
    :param log_requests: write a line per request (default True; slow ones are always written); off when
        there is neither a file nor an OTel logger
    :param flush_interval: longest wait, in seconds, before queued lines are written (default ``WRITE_INTERVAL``)
    """

    def __init__(
        self,
        path: Path | None,
        max_bytes: int = 10_000_000,
        backup_count: int = 5,
        otel_logger: OtelLogger | None = None,
        log_requests: bool = True,
        flush_interval: float = WRITE_INTERVAL,
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.otel_logger = otel_logger
        # Without a file or an exporter a request line would be formatted for nobody.
        self.log_requests = log_requests and (path is not None or otel_logger is not None)
        self.dropped = 0
        self.written = 0
        # A deque, not a queue: appending wakes nobody (no futex, no thread switch per request); the
        # writer drains it every flush_interval, or at once when BATCH lines wait or on flush/close.
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._file: _RotatingFile | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = _RotatingFile(path, max_bytes, backup_count)
        self._thread: threading.Thread | None = None

    # -- producers (any thread) --------------------------------------------------

    def request(self, method: str, target: str | None, seconds: float, error_type: str | None, transport: str) -> None:
        """One line for one MCP request; called inside the request's span."""
        if not self.log_requests:
            return
        ctx = current_span().get_span_context()  # a SpanContext: the tuple (trace_id, span_id, is_remote, flags, ...)
        self._put(("request", time.time(), method, target, seconds, error_type, transport, ctx[0], ctx[1], ctx[3]))

    def event(self, level: str, event: str, message: str, fields: dict[str, Any]) -> None:
        """A slow operation or an alert, with the current span's ids."""
        ctx = current_span().get_span_context()
        self._put(("event", time.time(), level, event, message, fields, ctx.trace_id, ctx.span_id,
                   int(ctx.trace_flags)))

    def _put(self, item: tuple[Any, ...]) -> None:
        waiting = len(self._queue)
        if waiting >= MAX_QUEUE:
            self.dropped += 1
            return
        self._queue.append(item)
        if waiting == BATCH - 1:  # a whole batch waits now
            self._wake.set()

    # -- the writer thread ---------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="otel-mcp-perflog", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued line is written (True) or ``timeout`` passes."""
        if self._thread is None:
            self._drain()
            return True
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.append(_STOP)
            self._wake.set()
            self._thread.join(timeout=5.0)
            self._thread = None
        self._drain()
        if self._file is not None:
            self._file.close()

    def _run(self) -> None:
        popleft = self._queue.popleft
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._queue:
                batch: list[Any] = []
                try:
                    while len(batch) < BATCH:
                        batch.append(popleft())
                except IndexError:
                    pass
                if not self._process(batch):
                    return

    def _drain(self) -> None:
        batch: list[Any] = []
        while self._queue:
            batch.append(self._queue.popleft())
        self._process([item for item in batch if item is not _STOP])

    def _process(self, batch: list[Any]) -> bool:
        """Write ``batch`` in order; markers (flush events) are set once what precedes them is written.
        False when it held ``_STOP``."""
        lines: list[str] = []
        for item in batch:
            if item.__class__ is not tuple:  # _STOP or a flush marker
                self._write_lines(lines)
                lines = []
                if not isinstance(item, threading.Event):
                    return False
                item.set()
                continue
            try:
                lines.append(self._line(item))
            except Exception:
                logger.debug("perf log line failed", exc_info=True)
        self._write_lines(lines)
        return True

    def _write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._file is not None:
            try:
                self._file.write_lines(lines)
            except OSError:
                logger.debug("perf log write failed", exc_info=True)
        self.written += len(lines)

    def _line(self, item: tuple[Any, ...]) -> str:
        if item[0] == "request":
            if self.otel_logger is not None:
                self._export_request(item)
            return _request_line(item, _request_shape(item))
        # Events (slow queries, alerts) are logging records: the OTel LoggingHandler exports those.
        record, *_ = _to_record(item)
        return json.dumps(record, separators=(",", ":"), default=str)

    def _export_request(self, item: tuple[Any, ...]) -> None:
        """A request's record through the SDK's ``Logger``."""
        _, ts, method, target, seconds, error_type, transport, trace_id, span_id, flags = item
        duration_ms = round(seconds * 1000, 3)
        attributes = _record_attributes(method, target, duration_ms, error_type, transport)
        body = f"{_record_body(method, target, error_type)}{duration_ms} ms"
        context = None
        if trace_id:
            context = trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, False,
                                                                             TraceFlags(flags))))
        assert self.otel_logger is not None
        self.otel_logger.emit(timestamp=int(ts * 1e9), context=context, severity_number=SeverityNumber.INFO,
                              severity_text="INFO", body=body, attributes=attributes, event_name=REQUEST_EVENT)


def _record_attributes(method: str, target: str | None, duration_ms: float | None, error_type: str | None,
                       transport: str) -> dict[str, Any]:
    """A request's OTel log record attributes (``duration_ms`` None: left out)."""
    attributes: dict[str, Any] = {"event": "request", "method": method}
    if duration_ms is not None:
        attributes["duration_ms"] = duration_ms
    attributes["outcome"] = "error" if error_type else "ok"
    attributes["transport"] = transport
    if target is not None:
        attributes["target"] = target
    if error_type is not None:
        attributes["error_type"] = error_type
    return attributes


def _record_body(method: str, target: str | None, error_type: str | None) -> str:
    """A request's OTel log record body, up to its duration."""
    return f"{method}{' ' + target if target else ''} {'error' if error_type else 'ok'} in "


def _to_record(item: tuple[Any, ...]) -> tuple[dict[str, Any], str, str, int, int, int, float]:
    if item[0] == "request":
        _, ts, method, target, seconds, error_type, transport, trace_id, span_id, flags = item
        record: dict[str, Any] = {
            "ts": _iso(ts), "level": "INFO", "event": "request", "method": method, "target": target,
            "duration_ms": round(seconds * 1000, 3), "outcome": "error" if error_type else "ok",
            "error_type": error_type, "transport": transport,
        }
        body = f"{_record_body(method, target, error_type)}{record['duration_ms']} ms"
        level = "INFO"
    else:
        _, ts, level, event, message, fields, trace_id, span_id, flags = item
        record = {"ts": _iso(ts), "level": level, "event": event, "message": message, **fields}
        body = message
    record["trace_id"] = f"{trace_id:032x}" if trace_id else None
    record["span_id"] = f"{span_id:016x}" if span_id else None
    return record, level, body, trace_id, span_id, flags, ts


_iso_second: tuple[int, str] = (-1, "")  # (whole second, "YYYY-mm-ddTHH:MM:SS"): one strftime a second, not a line


_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))  # the milliseconds' text, looked up, not formatted


def _iso(ts: float) -> str:
    """``ts`` in ISO 8601 (UTC, milliseconds truncated); the text up to the second is kept for the next call."""
    global _iso_second  # noqa: PLW0603  (a tuple swapped whole: safe from any thread)
    second = int(ts)
    cached = _iso_second
    if cached[0] != second:
        cached = _iso_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)))
    return cached[1] + _MILLIS[int((ts - second) * 1000)]


class _Shape(NamedTuple):
    """What a request's line shares with every request of its shape (method x target x outcome x transport:
    few), worked out once: the text around the duration."""

    line_before: str  # the JSON line from after the timestamp up to the duration
    line_after: str  # from after the duration up to the trace id


_SHAPES: dict[tuple[str, str | None, str | None, str], _Shape] = {}


def _shape(method: str, target: str | None, error_type: str | None, transport: str) -> _Shape:
    dumps = json.dumps
    shape = _Shape(
        f'","level":"INFO","event":"request","method":{dumps(method)},"target":{dumps(target)},"duration_ms":',
        f',"outcome":"{"error" if error_type else "ok"}","error_type":{dumps(error_type)},'
        f'"transport":{dumps(transport)},"trace_id":',
    )
    if len(_SHAPES) < 4096:
        _SHAPES[method, target, error_type, transport] = shape
    return shape


def _request_shape(item: tuple[Any, ...]) -> _Shape:
    """The kept ``_Shape`` of a request event."""
    key = (item[2], item[3], item[5], item[6])  # method, target, error type, transport
    return _SHAPES.get(key) or _shape(*key)


def _request_line(item: tuple[Any, ...], shape: _Shape) -> str:
    """A request event's JSON line (same keys, order and values as ``_to_record``), without building a dict."""
    _, ts, _, _, seconds, _, _, trace_id, span_id, _ = item
    trace_hex = f'"{trace_id.to_bytes(16, "big").hex()}"' if trace_id else "null"
    span_hex = f'"{span_id.to_bytes(8, "big").hex()}"' if span_id else "null"
    return (f'{{"ts":"{_iso(ts)}{shape.line_before}{seconds * 1000:.3f}{shape.line_after}{trace_hex},'
            f'"span_id":{span_hex}}}')


class _RotatingFile:
    """Append-only text file rotated at ``max_bytes`` into ``.1`` ... ``.backups`` (as ``RotatingFileHandler``),
    by its own byte count, one ``write`` + ``flush`` per batch of lines."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._stream: Any = None
        self._size = 0

    def _open(self) -> None:
        self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (kept open across batches)
        self._size = self._stream.tell()

    def write_lines(self, lines: list[str]) -> None:
        if self._stream is None:
            self._open()
        text = "\n".join(lines) + "\n"
        n = len(text) if text.isascii() else len(text.encode())
        if self.max_bytes <= 0 or self._size + n <= self.max_bytes:  # the usual batch: no rotation in it
            self._stream.write(text)
            self._stream.flush()
            self._size += n
            return
        chunk: list[str] = []
        size = self._size
        for line in lines:
            n = len(line.encode()) + 1 if not line.isascii() else len(line) + 1
            if self.max_bytes > 0 and size + n > self.max_bytes and size > 0:
                self._flush(chunk)
                chunk = []
                self._rotate()
                size = 0
            chunk.append(line)
            size += n
        self._flush(chunk)
        self._size = size

    def _flush(self, chunk: list[str]) -> None:
        if chunk:
            self._stream.write("\n".join(chunk) + "\n")
            self._stream.flush()

    def _rotate(self) -> None:
        self._stream.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                source = f"{self.path}.{i}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            open(self.path, "w").close()
        self._open()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class PerfLogHandler(logging.Handler):
    """Sends ``otel_mcp.perf.*`` log records (slow queries, alerts) to the JSON file as ``event`` lines."""

    def __init__(self, perf: PerfLog) -> None:
        super().__init__(logging.INFO)
        self.perf = perf

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: v for k, v in record.__dict__.items() if k.startswith(("db.", "alert", "duration", "threshold",
                                                                              "value", "method", "target"))}
        self.perf.event(record.levelname, getattr(record, "event", "log"), record.getMessage(), fields)


class Alerts:
    """Threshold checks: counted in ``otel_mcp.alerts{alert}``, logged as WARNING (rate-limited)."""

    def __init__(
        self, thresholds: Thresholds, meter_provider: Any = None,
        cache_counts: Callable[[], dict[str, int]] | None = None, rss: Callable[[], int] | None = None,
    ) -> None:
        meter = get_meter(__name__, __version__, meter_provider)
        self.counter = meter.create_counter(names.ALERTS, unit="{alert}", description="Performance thresholds crossed")
        self.thresholds = thresholds
        self.cache_counts = cache_counts
        self.rss = rss
        self._attrs: dict[str, dict[str, str]] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._last_cache: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fire(self, alert: str, message: str, **fields: Any) -> None:
        attrs = self._attrs.get(alert)
        if attrs is None:
            attrs = self._attrs.setdefault(alert, {names.ALERT: alert})
        self.counter.add(1, attrs)
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(alert)
            if last is not None and now - last < ALERT_LOG_INTERVAL:
                self._suppressed[alert] = self._suppressed.get(alert, 0) + 1
                return
            self._last_logged[alert] = now
            suppressed = self._suppressed.pop(alert, 0)
        if suppressed:
            message += f" ({suppressed} more since the last report)"
        alert_log.warning("alert %s: %s", alert, message, extra={"event": "alert", "alert": alert, **fields})

    def on_request(self, method: str, target: str | None, seconds: float, error_type: str | None, _t: str) -> None:
        if seconds >= self.thresholds.slow_request_s:
            self.fire("slow_request", f"{method}{' ' + target if target else ''} took {seconds * 1000:.1f} ms",
                      method=method, target=target, duration_ms=round(seconds * 1000, 3),
                      threshold_ms=self.thresholds.slow_request_s * 1000)

    def on_slow_query(self, operation: str, table: str | None, seconds: float) -> None:
        self.fire("slow_query", f"{operation} {table or '-'} took {seconds * 1000:.1f} ms",
                  duration_ms=round(seconds * 1000, 3), threshold_ms=self.thresholds.slow_query_s * 1000)

    def check(self) -> None:
        """The periodic checks: cache hit ratio over the last interval, and RSS."""
        if self.cache_counts is not None:
            c = self.cache_counts()
            hits, lookups = c["l1_hits"] + c["l2_hits"], c["l1_hits"] + c["l2_hits"] + c["misses"]
            if self._last_cache is not None:
                d_hits, d_lookups = hits - self._last_cache[0], lookups - self._last_cache[1]
                if d_lookups >= self.thresholds.min_cache_lookups:
                    ratio = d_hits / d_lookups
                    if ratio < self.thresholds.min_cache_hit_ratio:
                        self.fire("low_cache_hit_ratio", f"cache hit ratio {ratio:.2f} over {d_lookups} lookups",
                                  value=round(ratio, 4), threshold=self.thresholds.min_cache_hit_ratio)
            self._last_cache = (hits, lookups)
        if self.rss is not None:
            rss = self.rss()
            if rss > self.thresholds.max_rss_bytes:
                self.fire("high_memory", f"RSS {rss / 2**20:.0f} MiB", value=rss,
                          threshold=self.thresholds.max_rss_bytes)

    def start(self, interval: float) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check()
                except Exception:
                    logger.debug("alert check failed", exc_info=True)

        self._thread = threading.Thread(target=run, name="otel-mcp-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
