"""Live figures for a person at a terminal: the ``otel-mcp://stats`` resource and ``GET /metrics``.

``stats_snapshot`` reads the metrics of the ``MeterProvider`` that
``setup_telemetry`` built and turns them into request rates and latency percentiles per method (and
tool), cache hit rate, DB latency per statement kind, composition step
latency, and the process's RSS/CPU. Rates and percentiles are over the last
``WINDOW`` seconds when an earlier read is at least that old, else since the
earliest read (or the start).

Where the figures come from (``Telemetry.stats_reader``): when a metric
exporter is configured, the exporter's own periodic reader, through
``MetricsTap`` (one reader, so every histogram record is aggregated once, not
twice -- a second reader doubled the cost of every record); otherwise an
``InMemoryMetricReader`` (a pull reader: it costs nothing until asked). A
stats read collects the tap's reader without sending what it collected (it
waits for an export in progress, at most the exporter's timeout).
It is only used when the reader is cumulative with explicit-bucket histograms
(the defaults), which the rates and percentiles below need. With telemetry disabled, the resource still
answers (process figures and the cache's own counters), so the MCP surface
does not depend on telemetry.

Usage
-----
.. code-block:: python

    register_stats(server, telemetry, rules)    # otel-mcp://stats, and /metrics when enabled
    print(json.dumps(stats_snapshot(telemetry, rules), indent=2))

Configuration
-------------
``metrics_endpoint`` (setting) or ``OTEL_METRICS_EXPORTER=prometheus`` adds ``GET /metrics`` on HTTP.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_PROMPT_NAME, GEN_AI_TOOL_NAME
from opentelemetry.semconv._incubating.attributes.mcp_attributes import MCP_METHOD_NAME, MCP_PROTOCOL_VERSION
from opentelemetry.semconv._incubating.metrics.mcp_metrics import MCP_SERVER_OPERATION_DURATION
from opentelemetry.semconv.attributes.db_attributes import DB_COLLECTION_NAME, DB_OPERATION_NAME
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION

from otel_mcp.telemetry import names
from otel_mcp.telemetry.dropped import DROPPED, DelegatingMetricExporter

STATS_URI = "otel-mcp://stats"
WINDOW = 60.0  # seconds the rates and percentiles look back, when an earlier read allows it
KEEP = 600.0  # seconds of earlier reads kept
PERCENTILES = (0.5, 0.95, 0.99)
COLLECT_TIMEOUT_MS = 5_000  # a stats read's collection (observable callbacks included)


class MetricsSource(Protocol):
    """What the stats view reads: an ``InMemoryMetricReader`` or a ``MetricsTap``."""

    def get_metrics_data(self) -> MetricsData | None: ...


class MetricsTap:
    """The stats view's window on an exporting reader, so that no second reader aggregates every record.

    ``wrap`` the exporter before building the ``PeriodicExportingMetricReader``, then set ``reader``.
    ``get_metrics_data`` has that reader ``collect()``: the export it makes on the reading thread is kept
    by the wrapper instead of sent. Skipping an export is harmless only because the reader is cumulative:
    ``shares`` checks it.
    """

    def __init__(self) -> None:
        self.reader: MetricReader | None = None
        self._local = threading.local()

    @staticmethod
    def shares(exporter: MetricExporter, env: Mapping[str, str] | None = None) -> bool:
        """Whether the stats view can read ``exporter``'s reader: cumulative, explicit-bucket histograms
        (what the OTLP and console exporters do unless their two variables ask otherwise)."""
        env = os.environ if env is None else env
        temporality = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
        histogram = env.get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "explicit_bucket_histogram")
        return temporality == "cumulative" and histogram.strip().lower() == "explicit_bucket_histogram"

    def wrap(self, exporter: MetricExporter) -> MetricExporter:
        return _TapExporter(exporter, self)

    def get_metrics_data(self) -> MetricsData | None:
        reader = self.reader
        if reader is None:
            return None
        local = self._local
        local.kept = None
        local.keeping = True
        try:
            reader.collect(timeout_millis=COLLECT_TIMEOUT_MS)
        finally:
            local.keeping = False
        kept: MetricsData | None = local.kept
        local.kept = None
        return kept

    def keeping(self) -> bool:
        return bool(getattr(self._local, "keeping", False))


def stats_reader_for(exporter: MetricExporter) -> tuple[MetricReader | None, MetricsSource | None]:
    """(the periodic reader for ``exporter``, what the stats view reads) when they can be one reader."""
    if not MetricsTap.shares(exporter):
        return None, None
    tap = MetricsTap()
    tap.reader = PeriodicExportingMetricReader(tap.wrap(exporter))
    return tap.reader, tap


class _TapExporter(DelegatingMetricExporter):
    """Forwards exports, except the one a stats read triggers on its own thread (kept, not sent)."""

    def __init__(self, inner: MetricExporter, tap: MetricsTap) -> None:
        super().__init__(inner)
        self.tap = tap

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self.tap.keeping():
            self.tap._local.kept = metrics_data
            return MetricExportResult.SUCCESS
        return super().export(metrics_data, timeout_millis, **kwargs)


@dataclass
class _Hist:
    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0
    errors: int = 0

    def add(self, point: HistogramDataPoint, error: bool) -> None:
        if not self.counts:
            self.bounds = tuple(point.explicit_bounds)
            self.counts = [0] * len(point.bucket_counts)
        if tuple(point.explicit_bounds) == self.bounds:
            for i, c in enumerate(point.bucket_counts):
                self.counts[i] += c
        self.count += point.count
        self.total += point.sum
        if error:
            self.errors += point.count

    def minus(self, earlier: _Hist | None) -> _Hist:
        if earlier is None or earlier.bounds != self.bounds:
            return self
        return _Hist(self.bounds, [a - b for a, b in zip(self.counts, earlier.counts, strict=False)],
                     self.count - earlier.count, self.total - earlier.total, self.errors - earlier.errors)

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, as Prometheus' ``histogram_quantile`` does."""
        if self.count <= 0 or not self.counts:
            return None
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            if seen + c >= rank and c > 0:
                lower = self.bounds[i - 1] if i > 0 else 0.0
                upper = self.bounds[i] if i < len(self.bounds) else (self.bounds[-1] if self.bounds else 0.0)
                return lower + (upper - lower) * ((rank - seen) / c)
            seen += c
        return self.bounds[-1] if self.bounds else None


def _histograms(data: MetricsData | None, metric_name: str, key_of: Any) -> dict[str, _Hist]:
    out: dict[str, _Hist] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != metric_name:
                    continue
                for point in metric.data.data_points:
                    if isinstance(point, HistogramDataPoint):
                        attrs = point.attributes or {}
                        out.setdefault(key_of(attrs), _Hist()).add(point, ERROR_TYPE in attrs)
    return out


def _sums(data: MetricsData | None, metric_name: str) -> list[tuple[Mapping[str, Any], float]]:
    out: list[tuple[Mapping[str, Any], float]] = []
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == metric_name:
                    out.extend((p.attributes or {}, p.value) for p in metric.data.data_points
                               if isinstance(p, NumberDataPoint))
    return out


def _method_key(attrs: Mapping[str, Any]) -> str:
    target = attrs.get(GEN_AI_TOOL_NAME) or attrs.get(GEN_AI_PROMPT_NAME)
    method = str(attrs.get(MCP_METHOD_NAME, "?"))
    return f"{method} {target}" if target else method


def _protocol_key(attrs: Mapping[str, Any]) -> str:
    return str(attrs.get(MCP_PROTOCOL_VERSION, "?"))


def _db_key(attrs: Mapping[str, Any]) -> str:
    return f"{attrs.get(DB_OPERATION_NAME, '?')} {attrs.get(DB_COLLECTION_NAME, '-')}"


def _step_key(attrs: Mapping[str, Any]) -> str:
    return str(attrs.get(names.STEP, "?"))


@dataclass
class _Reading:
    at: float
    methods: dict[str, _Hist]
    protocols: dict[str, _Hist]
    db: dict[str, _Hist]
    steps: dict[str, _Hist]
    cache: dict[str, int]


class StatsReader:
    """Keeps earlier readings so that rates and percentiles cover a recent window."""

    def __init__(self, telemetry: Any, rules: Any = None) -> None:
        self.telemetry = telemetry
        self.rules = rules
        self._readings: deque[_Reading] = deque()
        self._lock = threading.Lock()
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def _read(self) -> _Reading:
        reader: MetricsSource | None = getattr(self.telemetry, "stats_reader", None)
        data = reader.get_metrics_data() if reader is not None else None
        return _Reading(
            time.time(),
            _histograms(data, MCP_SERVER_OPERATION_DURATION, _method_key),
            _histograms(data, MCP_SERVER_OPERATION_DURATION, _protocol_key),
            _histograms(data, DB_CLIENT_OPERATION_DURATION, _db_key),
            _histograms(data, names.COMPOSE_DURATION, _step_key),
            self._cache_counts(),
        )

    def _database(self) -> dict[str, str] | None:
        """Which rules database this process uses (a URL's password shown as ``***``)."""
        store = getattr(self.rules, "store", None)
        return {"backend": store.BACKEND, "location": store.location} if store is not None else None

    def _cache_counts(self) -> dict[str, int]:
        cache = getattr(getattr(self.rules, "composer", None), "cache", None)
        counts = {k: int(getattr(cache, k, 0)) for k in ("l1_hits", "l2_hits", "misses", "errors")}
        counts["present"] = int(cache is not None)
        return counts

    def snapshot(self) -> dict[str, Any]:
        now_reading = self._read()
        with self._lock:
            while self._readings and now_reading.at - self._readings[0].at > KEEP:
                self._readings.popleft()
            baseline = None
            for reading in self._readings:
                if now_reading.at - reading.at >= WINDOW:
                    baseline = reading
            if baseline is None and self._readings:
                baseline = self._readings[0]
            self._readings.append(now_reading)
        started = getattr(self.telemetry, "started", now_reading.at)
        since = baseline.at if baseline is not None else started
        window = max(now_reading.at - since, 1e-9)
        return {
            "uptime_s": round(now_reading.at - started, 1),
            "window_s": round(window, 1),
            "telemetry": {
                "enabled": bool(getattr(self.telemetry, "enabled", False)),
                "exporting": getattr(self.telemetry, "exporting", {}),
                "in_process_metrics": getattr(self.telemetry, "stats_reader", None) is not None,
                "fastpath": "on" if _fastpath() else "off",
                "dropped": DROPPED.snapshot(),
            },
            "methods": _table(now_reading.methods, baseline.methods if baseline else {}, window, errors=True),
            # the version each client negotiated: 2026-07-28 is sessionless, earlier ones have sessions
            "protocols": _table(now_reading.protocols, baseline.protocols if baseline else {}, window, errors=True),
            "database": self._database(),
            "db": _table(now_reading.db, baseline.db if baseline else {}, window),
            "compose_steps": _table(now_reading.steps, baseline.steps if baseline else {}, window),
            "cache": _cache(now_reading.cache, baseline.cache if baseline else None),
            "process": self._process_figures(),
        }

    def _process_figures(self) -> dict[str, Any]:
        p = self._process
        with p.oneshot():
            memory = p.memory_info()
            figures: dict[str, Any] = {
                "rss_bytes": memory.rss,
                "cpu_percent": p.cpu_percent(None),
                "threads": p.num_threads(),
                "gc_collections": [generation["collections"] for generation in gc.get_stats()],
                "gc_thresholds": list(gc.get_threshold()),  # young, middle, old (runner.tune_young_collections)
                "gc_frozen_objects": gc.get_freeze_count(),  # the startup heap, out of the GC's walks (runner.py)
            }
            with contextlib.suppress(AttributeError, psutil.Error):
                figures["open_fds"] = p.num_fds()
        return figures


def _table(now: dict[str, _Hist], before: dict[str, _Hist], window: float, errors: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(now):
        total = now[key]
        recent = total.minus(before.get(key))
        row: dict[str, Any] = {"count": total.count, "rate_per_s": round(recent.count / window, 3)}
        if errors:
            row["errors"] = total.errors
        if recent.count:
            row["mean_ms"] = round(recent.total / recent.count * 1000, 3)
        for q in PERCENTILES:
            value = recent.quantile(q)
            if value is not None:
                row[f"p{round(q * 100)}_ms"] = round(value * 1000, 3)
        out[key] = row
    return out


def _cache(now: dict[str, int], before: dict[str, int] | None) -> dict[str, Any]:
    if not now.get("present"):
        return {"enabled": False}
    hits = now["l1_hits"] + now["l2_hits"]
    lookups = hits + now["misses"]
    out: dict[str, Any] = {"enabled": True, "lookups": lookups, "l1_hits": now["l1_hits"], "l2_hits": now["l2_hits"],
                           "misses": now["misses"], "errors": now["errors"],
                           "hit_ratio": round(hits / lookups, 4) if lookups else None}
    if before is not None:
        d_hits = hits - before["l1_hits"] - before["l2_hits"]
        d_lookups = lookups - before["l1_hits"] - before["l2_hits"] - before["misses"]
        out["window_hit_ratio"] = round(d_hits / d_lookups, 4) if d_lookups else None
    return out


def _fastpath() -> bool:
    from otel_mcp.telemetry import sdk_internals

    return sdk_internals.enabled()


def register_stats(server: Any, telemetry: Any, rules: Any = None) -> StatsReader:
    """The ``otel-mcp://stats`` resource, and ``GET /metrics`` when the Prometheus reader is on."""
    reader = StatsReader(telemetry, rules)

    def otel_mcp_stats() -> str:
        """Live figures: request rates and latency percentiles per method, cache hit rate, DB latency, RSS/CPU."""
        return json.dumps(reader.snapshot())

    server.resource(STATS_URI, name="otel-mcp-stats", mime_type="application/json")(otel_mcp_stats)

    if getattr(telemetry, "prometheus", False):
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
        from starlette.requests import Request
        from starlette.responses import Response

        async def prometheus_metrics(_: Request) -> Response:
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

        server.custom_route("/metrics", methods=["GET"])(prometheus_metrics)
    return reader


def render_text(stats: Mapping[str, Any]) -> str:
    """The snapshot as aligned tables (for ``otel-mcp stats``)."""
    lines = [f"otel-mcp: up {stats.get('uptime_s', 0):.0f}s, window {stats.get('window_s', 0):.0f}s, "
             f"telemetry {'on' if stats.get('telemetry', {}).get('enabled') else 'off'}"
             f" (SDK fast paths: {stats.get('telemetry', {}).get('fastpath', '-')})"]

    def table(title: str, rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        width = max(len(k) for k in rows)
        lines.append("")
        lines.append(f"{title:<{width}}  " + "  ".join(f"{c:>10}" for c in columns))
        for key, row in rows.items():
            cells = [row.get(c) for c in columns]
            lines.append(f"{key:<{width}}  " + "  ".join(f"{'-' if v is None else v:>10}" for v in cells))

    table("method", stats.get("methods", {}), ("count", "rate_per_s", "errors", "p50_ms", "p95_ms", "p99_ms"))
    table("protocol version", stats.get("protocols", {}), ("count", "rate_per_s", "errors", "p50_ms", "p99_ms"))
    table("db statement", stats.get("db", {}), ("count", "rate_per_s", "p50_ms", "p99_ms"))
    table("compose step", stats.get("compose_steps", {}), ("count", "p50_ms", "p99_ms"))
    cache = stats.get("cache", {})
    lines.append("")
    if cache.get("enabled"):
        lines.append(f"cache: {cache['lookups']} lookups, hit ratio {cache.get('hit_ratio')} "
                     f"(window {cache.get('window_hit_ratio')}), {cache['errors']} errors")
    else:
        lines.append("cache: off")
    proc = stats.get("process", {})
    lines.append(f"process: RSS {proc.get('rss_bytes', 0) / 2**20:.1f} MiB, CPU {proc.get('cpu_percent')}%, "
                 f"{proc.get('threads')} threads, {proc.get('open_fds', '-')} fds; GC collections by generation "
                 f"{proc.get('gc_collections', '-')}, {proc.get('gc_frozen_objects', '-')} objects frozen")
    return "\n".join(lines)
