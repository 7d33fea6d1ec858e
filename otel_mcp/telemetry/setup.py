"""Telemetry setup for one server process, from the standard ``OTEL_*`` environment.

``setup_telemetry(settings)`` builds the tracer, meter and logger providers
(unless ``opentelemetry-instrument`` or the application already set SDK
providers, which are then reused: no double providers, no duplicate spans),
turns on our instrumentors and the contrib ones we use, and starts the JSON
performance log and the alert checks. ``Telemetry.shutdown()`` flushes all of it.

Defaults, when the environment says nothing:

- OTLP/gRPC to ``localhost:4317`` for traces, metrics and logs, but only if
  something listens there at start (one INFO line otherwise, and telemetry
  stays in-process for ``otel-mcp://stats`` and ``/metrics``); an endpoint set
  in the environment is always used, and exporter failures are logged at
  most once a minute per logger instead of flooding stderr;
- over gRPC, spans and log records are encoded by ``otlp_wire`` (the SDK encoder's bytes at ~1/5 of
  its cost; ``http/protobuf`` keeps the SDK's encoder), and the per-request log record skips the SDK's
  ``Logger`` (``otlp_wire.DirectLogger``) when the one logs exporter is that gRPC one;
- spans are ``telemetry/spans.py``'s ``LeanSpan`` (the SDK's span without its per-value attribute
  cleaning and end-of-span copy: ~3x cheaper to make; ``OTEL_MCP_LEAN_SPANS=false`` for the SDK's own);
- ``BatchSpanProcessor`` with 64-span batches (``OTEL_BSP_*`` override): a
  512-span export holds the GIL for ~13 ms and stalls the event loop;
- the finer ``mcp.server.operation.duration`` View (``FINE_DURATION_BUCKETS``);
- ``service.name=otel-mcp`` unless ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name it.

``OTEL_SDK_DISABLED=true`` turns all of it off: nothing is instrumented, the
server behaves exactly as without telemetry.

Usage
-----
.. code-block:: python

    telemetry = setup_telemetry(settings)
    server = build_server(rules)
    telemetry.attach(server, rules)
    ...
    telemetry.shutdown()

Configuration
-------------
``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` (``otlp``, ``console``, ``none``; metrics
also ``prometheus``), ``OTEL_EXPORTER_OTLP_ENDPOINT``/``_PROTOCOL``/``_HEADERS``
(and per-signal forms), ``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_BSP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_METRICS_EXEMPLAR_FILTER``. ``OTEL_MCP_PERF_LOG_EXPORT``:
``all`` (default: every JSON performance line also becomes an OTel log record when a logs exporter
is set) or ``slow`` (only slow requests, slow queries and alerts do; the per-request record repeats
what the request's span already carries; see ``docs/performance.md`` for its cost).
``OTEL_MCP_LEAN_SPANS=false``: the SDK's own span class instead of ``spans.LeanSpan``. Our own
settings (``otel_mcp.config.Settings``): ``perf_log*``, ``alert_*``, ``metrics_endpoint``,
``telemetry_fine_buckets``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, LogRecordLimits
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv._incubating.metrics.mcp_metrics import MCP_SERVER_OPERATION_DURATION

from otel_mcp import __version__
from otel_mcp.telemetry import names, otlp_wire
from otel_mcp.telemetry.dropped import (
    DROPPED,
    CountingBatchSpanProcessor,
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    register_dropped_counter,
)
from otel_mcp.telemetry.perflog import Alerts, PerfLog, PerfLogHandler, Thresholds
from otel_mcp.telemetry.spans import LeanTracerProvider
from otel_mcp.telemetry.stats import MetricsSource, MetricsTap

logger = logging.getLogger("otel_mcp.telemetry")

DEFAULT_OTLP_GRPC = ("localhost", 4317)
DEFAULT_OTLP_HTTP = ("localhost", 4318)
PROBE_TIMEOUT = 0.25  # seconds to find out whether a default collector listens
BSP_DEFAULTS = {"max_export_batch_size": 64, "schedule_delay_millis": 1000, "max_queue_size": 4096}
SHUTDOWN_TIMEOUT = 5.0  # seconds: flush at exit, all providers together
FAILING_SHUTDOWN_TIMEOUT = 1.0  # seconds, when the last export failed (backend down)
LEAN_SPANS_ENV = "OTEL_MCP_LEAN_SPANS"  # false: the SDK's own span class (see telemetry/spans.py)
PERF_LOG_EXPORT_ENV = "OTEL_MCP_PERF_LOG_EXPORT"  # all | slow: which perf-log lines become OTel log records
EXPORT_LOG_INTERVAL = 60.0  # seconds between two exporter failure messages from one logger
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk._shared_internal",
)


@dataclass(frozen=True)
class TelemetryOptions:
    """Our settings that shape telemetry (the rest comes from ``OTEL_*``).

    :param perf_log: JSON performance log file (None: none)
    :param perf_log_max_bytes: rotate at this size (default 10 MB)
    :param perf_log_backups: rotated files kept (default 5)
    :param perf_log_requests: a line per request, not only slow ones (default True)
    :param perf_log_flush_s: longest wait before queued lines are written (default 0.25)
    :param metrics_endpoint: serve ``GET /metrics`` on the HTTP transport (default False)
    :param fine_buckets: the finer operation-duration View (default True)
    :param alert_interval: seconds between the periodic alert checks (default 15)
    """

    perf_log: Path | None = None
    perf_log_max_bytes: int = 10_000_000
    perf_log_backups: int = 5
    perf_log_requests: bool = True
    perf_log_flush_s: float = 0.25
    metrics_endpoint: bool = False
    fine_buckets: bool = True
    alert_interval: float = 15.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    db_path: Path | None = None
    cache_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> TelemetryOptions:
        def get(name: str, default: Any) -> Any:
            return getattr(settings, name, default)

        perf_log = get("perf_log", None)
        if perf_log is None or str(perf_log) == "":
            perf_log = Path(get("state_dir", Path("."))) / "perf.log"
        elif str(perf_log) in ("-", "off", "none"):
            perf_log = None
        return cls(
            perf_log=Path(perf_log) if perf_log is not None else None,
            perf_log_max_bytes=int(get("perf_log_max_bytes", 10_000_000)),
            perf_log_backups=int(get("perf_log_backups", 5)),
            perf_log_flush_s=float(get("perf_log_flush_ms", 250)) / 1000,
            metrics_endpoint=bool(get("metrics_endpoint", False)),
            thresholds=Thresholds(
                slow_request_s=float(get("alert_slow_request_ms", 1000)) / 1000,
                slow_query_s=float(get("alert_slow_query_ms", 100)) / 1000,
                min_cache_hit_ratio=float(get("alert_min_cache_hit_percent", 50)) / 100,
                max_rss_bytes=int(get("alert_max_rss_mb", 1024)) * 2**20,
            ),
            db_path=get("db", None),
            cache_dir=get("cache_dir", None),
        )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _exporters(env: Mapping[str, str], signal: str, default: str = "otlp") -> set[str]:
    raw = env.get(f"OTEL_{signal}_EXPORTER", default)
    return {part.strip().lower() for part in raw.split(",") if part.strip()} - {"none"}


class _RateLimit(logging.Filter):
    """At most one record per ``interval`` from a logger; the count of the others goes into the next one."""

    def __init__(self, interval: float = EXPORT_LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._last = -interval
        self._suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._suppressed += 1
                return False
            self._last = now
            if self._suppressed:
                record.msg = f"{record.msg} ({self._suppressed} similar messages suppressed)"
                self._suppressed = 0
        return True


def quiet_exporter_logs() -> None:
    for name in _EXPORTER_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _RateLimit) for f in target.filters):
            target.addFilter(_RateLimit())


def _otlp_endpoint(env: Mapping[str, str]) -> tuple[bool, str, tuple[str, int]]:
    """(explicitly configured?, protocol, host/port to probe)."""
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower() or "grpc"
    explicit = any(
        env.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                   "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    )
    default = DEFAULT_OTLP_GRPC if protocol == "grpc" else DEFAULT_OTLP_HTTP
    url = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        return explicit, protocol, (parsed.hostname or default[0], parsed.port or default[1])
    return explicit, protocol, default


def listening(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _span_exporter(kind: str, protocol: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    if protocol == "grpc":
        return otlp_wire.span_exporter()  # the stock exporter, with a cheaper encoder
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter()


def _metric_exporter(kind: str, protocol: str) -> Any:
    if kind == "console":
        return ConsoleMetricExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter

    return HttpMetricExporter()


def _log_exporter(kind: str, protocol: str) -> Any:
    if kind == "console":
        return ConsoleLogRecordExporter()
    if protocol == "grpc":
        return otlp_wire.log_exporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

    return HttpLogExporter()


def _batch_processor(exporter: SpanExporter, env: Mapping[str, str]) -> BatchSpanProcessor:
    """Our batch defaults, each unless its ``OTEL_BSP_*`` variable is set (then the SDK reads it)."""

    def ours(key: str, env_name: str) -> int | None:
        return None if env.get(env_name) else BSP_DEFAULTS[key]

    return CountingBatchSpanProcessor(
        CountingSpanExporter(exporter),
        max_queue_size=ours("max_queue_size", "OTEL_BSP_MAX_QUEUE_SIZE"),
        schedule_delay_millis=ours("schedule_delay_millis", "OTEL_BSP_SCHEDULE_DELAY"),
        max_export_batch_size=ours("max_export_batch_size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
    )


def make_resource(env: Mapping[str, str]) -> Resource:
    attrs: dict[str, str] = {"service.version": __version__, "service.instance.id": str(uuid.uuid4())}
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create(attrs)
    if not named:
        resource = resource.merge(Resource({"service.name": "otel-mcp"}))
    return resource


def operation_duration_view(fine: bool = True) -> View:
    """The documented View: ``FINE_DURATION_BUCKETS`` (sub-10 ms) for ``mcp.server.operation.duration``."""
    buckets = names.FINE_DURATION_BUCKETS if fine else names.SEMCONV_DURATION_BUCKETS
    return View(instrument_name=MCP_SERVER_OPERATION_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(list(buckets)))


@dataclass
class Telemetry:
    """What ``setup_telemetry`` built; ``shutdown()`` once at exit."""

    enabled: bool
    options: TelemetryOptions = field(default_factory=TelemetryOptions)
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    owns_providers: bool = False
    owned: list[Any] = field(default_factory=list)  # the providers built here: the only ones shut down
    stats_reader: MetricsSource | None = None  # what otel-mcp://stats reads (see ``stats.MetricsTap``)
    prometheus: bool = False
    perf: PerfLog | None = None
    alerts: Alerts | None = None
    exporting: dict[str, list[str]] = field(default_factory=dict)
    direct_logs: Callable[[otlp_wire.EncodedLogRecord], None] | None = None  # see ``otlp_wire.DirectLogger``
    started: float = field(default_factory=time.time)
    _handlers: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)

    def attach(self, server: Any, rules: Any = None) -> None:
        """Register ``otel-mcp://stats`` (always, so the MCP surface does not depend on telemetry) and,
        when enabled, the ``/metrics`` route; instruments a server built before ``setup_telemetry``."""
        from otel_mcp.telemetry.stats import register_stats

        register_stats(server, self, rules)
        if self.enabled:
            from otel_mcp.telemetry.mcp import McpInstrumentor

            McpInstrumentor.instrument_server(server)
            if rules is not None:
                cache = getattr(getattr(rules, "composer", None), "cache", None)
                if cache is not None:
                    from otel_mcp.telemetry.cache import CacheInstrumentor

                    CacheInstrumentor.track(cache)

    def flush(self, timeout_millis: int = 5000) -> None:
        if self.perf is not None:
            self.perf.flush(timeout_millis / 1000)
        for provider in (self.tracer_provider, self.meter_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if callable(flush):
                try:
                    flush(timeout_millis=timeout_millis)
                except Exception:
                    logger.debug("flush failed", exc_info=True)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Flush and shut down, bounded by ``timeout`` seconds in all (``FAILING_SHUTDOWN_TIMEOUT`` while
        exports are failing): a Collector that is down or hangs must not hold the process's exit. What is
        not sent by then is dropped (and counted)."""
        if self.alerts is not None:
            self.alerts.stop()
        if DROPPED.failing():
            timeout = min(timeout, FAILING_SHUTDOWN_TIMEOUT)
        if self.perf is not None:
            self.perf.flush(timeout)
        deadline = time.monotonic() + timeout
        providers = [p for p in (self.tracer_provider, self.meter_provider, self.logger_provider) if p is not None]

        def flush_and_shutdown() -> None:
            for provider in providers:
                flush = getattr(provider, "force_flush", None)
                left_ms = int(max(deadline - time.monotonic(), 0.05) * 1000)
                if callable(flush):
                    try:
                        flush(timeout_millis=left_ms)
                    except Exception:
                        logger.debug("flush failed", exc_info=True)
            if self.owns_providers:
                for provider in [p for p in providers if any(p is o for o in self.owned)]:
                    shutdown = getattr(provider, "shutdown", None)
                    if callable(shutdown):
                        try:
                            shutdown()
                        except Exception:
                            logger.debug("provider shutdown failed", exc_info=True)

        worker = threading.Thread(target=flush_and_shutdown, name="otel-mcp-telemetry-shutdown", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            logger.warning("telemetry flush did not finish within %.0fs (backend down or slow): unsent telemetry "
                           "is dropped", timeout)
        if self.perf is not None:
            self.perf.close()
        for target, handler in self._handlers:
            target.removeHandler(handler)
        self._handlers.clear()


def _default_log_limits() -> bool:
    """No attribute limits that could cut the per-request record (which ``DirectLogger`` does not apply)."""
    limits = LogRecordLimits()
    return limits.max_attribute_length is None and (limits.max_attributes is None or limits.max_attributes >= 16)


def _sdk_provider(provider: Any, sdk_type: type) -> bool:
    return isinstance(provider, sdk_type)


def setup_telemetry(
    settings: Any = None,
    env: Mapping[str, str] | None = None,
    *,
    options: TelemetryOptions | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
    extra_metric_readers: tuple[MetricReader, ...] = (),
    set_global: bool = True,
) -> Telemetry:
    """Configure telemetry for this process; see the module docstring.

    Tests pass their own providers (in-memory exporters) and ``set_global=False``.
    """
    env = os.environ if env is None else env
    options = options or (TelemetryOptions.from_settings(settings) if settings is not None else TelemetryOptions())
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return Telemetry(enabled=False, options=options)
    quiet_exporter_logs()
    telemetry = Telemetry(enabled=True, options=options)

    explicit, protocol, (host, port) = _otlp_endpoint(env)
    otlp_ok = explicit or listening(host, port)
    traces = _exporters(env, "TRACES")
    metric_kinds = _exporters(env, "METRICS")
    logs = _exporters(env, "LOGS")
    if not otlp_ok and "otlp" in traces | metric_kinds | logs:
        logger.info("no OTLP collector at %s:%d and none configured: telemetry stays in-process", host, port)
        traces.discard("otlp")
        metric_kinds.discard("otlp")
        logs.discard("otlp")
    telemetry.prometheus = options.metrics_endpoint or "prometheus" in metric_kinds
    metric_kinds.discard("prometheus")
    telemetry.exporting = {"traces": sorted(traces), "metrics": sorted(metric_kinds), "logs": sorted(logs)}
    resource = make_resource(env)

    # -- traces -------------------------------------------------------------------
    global_tp = trace.get_tracer_provider()
    if tracer_provider is None and _sdk_provider(global_tp, TracerProvider):
        tracer_provider = global_tp  # type: ignore[assignment]  # opentelemetry-instrument set it up
    elif tracer_provider is None and not traces:
        tracer_provider = None  # no trace exporter: keep the no-op tracer, spans cost (almost) nothing
    elif tracer_provider is None:
        lean = env.get(LEAN_SPANS_ENV, "true").strip().lower() not in ("false", "0", "no", "off")
        tracer_provider = (LeanTracerProvider if lean else TracerProvider)(resource=resource)
        for kind in sorted(traces):
            tracer_provider.add_span_processor(_batch_processor(_span_exporter(kind, protocol), env))
        telemetry.owns_providers = True
        telemetry.owned.append(tracer_provider)
        if set_global:
            trace.set_tracer_provider(tracer_provider)
    telemetry.tracer_provider = tracer_provider

    # -- metrics ------------------------------------------------------------------
    global_mp = metrics.get_meter_provider()
    if meter_provider is None and _sdk_provider(global_mp, MeterProvider):
        meter_provider = global_mp  # type: ignore[assignment]
    elif meter_provider is None:
        # One reader per exporter; the stats view reads the first that allows it (``MetricsTap``), or a
        # reader of its own when none does: every histogram record is aggregated once per reader.
        readers: list[MetricReader] = []
        tap: MetricsTap | None = None
        for kind in sorted(metric_kinds):
            exporter: MetricExporter = CountingMetricExporter(_metric_exporter(kind, protocol))
            if tap is None and MetricsTap.shares(exporter):
                tap = MetricsTap()
                tap.reader = PeriodicExportingMetricReader(tap.wrap(exporter))
                readers.append(tap.reader)
            else:
                readers.append(PeriodicExportingMetricReader(exporter))
        if tap is None:
            in_memory = InMemoryMetricReader()
            readers.append(in_memory)
            telemetry.stats_reader = in_memory
        else:
            telemetry.stats_reader = tap
        if telemetry.prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers.append(PrometheusMetricReader())
        readers.extend(extra_metric_readers)
        meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, views=[operation_duration_view(options.fine_buckets)]
        )
        register_dropped_counter(meter_provider)
        telemetry.owns_providers = True
        telemetry.owned.append(meter_provider)
        if set_global:
            metrics.set_meter_provider(meter_provider)
    telemetry.meter_provider = meter_provider

    # -- logs ---------------------------------------------------------------------
    global_lp = get_logger_provider()
    if logger_provider is None and isinstance(global_lp, LoggerProvider):
        logger_provider = global_lp
    elif logger_provider is None and logs:
        logger_provider = LoggerProvider(resource=resource)
        for kind in sorted(logs):
            processor = BatchLogRecordProcessor(CountingLogExporter(_log_exporter(kind, protocol)))
            logger_provider.add_log_record_processor(processor)
        if logs == {"otlp"} and protocol == "grpc" and _default_log_limits():
            telemetry.direct_logs = otlp_wire.direct_queue(processor)  # one batch processor, otlp_wire's encoder
        telemetry.owns_providers = True
        telemetry.owned.append(logger_provider)
        if set_global:
            set_logger_provider(logger_provider)
    telemetry.logger_provider = logger_provider
    if logger_provider is not None:
        handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
        target = logging.getLogger("otel_mcp")
        target.addHandler(handler)
        telemetry._handlers.append((target, handler))

    _instrument_all(telemetry, tracer_provider, meter_provider)
    _start_perf(telemetry, meter_provider, logger_provider)
    return telemetry


def _instrument_all(telemetry: Telemetry, tracer_provider: Any, meter_provider: Any) -> None:
    # The contrib DB instrumentations emit the old names (db.system, db.statement) unless told to follow
    # the stable database conventions (db.system.name, db.query.text); an operator's own choice wins.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "database")
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    from otel_mcp.telemetry.cache import CacheInstrumentor
    from otel_mcp.telemetry.compose import ComposeInstrumentor
    from otel_mcp.telemetry.mcp import McpInstrumentor
    from otel_mcp.telemetry.resources import ResourceInstrumentor
    from otel_mcp.telemetry.store import StoreInstrumentor
    from otel_mcp.telemetry.tasks import NamedAsyncioInstrumentor

    options = telemetry.options
    common = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    traced = tracer_provider is not None
    for instrumentor, extra in (
        (McpInstrumentor(), {}),
        (ComposeInstrumentor(), {}),
        (StoreInstrumentor(), {"slow_query_seconds": options.thresholds.slow_query_s}),
        (CacheInstrumentor(), {}),
        (ResourceInstrumentor(), {"db_path": options.db_path, "cache_dir": options.cache_dir}),
        (SQLite3Instrumentor(), {"meter_provider": NoOpMeterProvider()}),  # spans only; see store.py
        (NamedAsyncioInstrumentor(), {}),
    ):
        if isinstance(instrumentor, SQLite3Instrumentor) and not traced:
            continue  # it only makes spans
        if instrumentor.is_instrumented_by_opentelemetry:
            continue  # opentelemetry-instrument (or an earlier setup) did it, with the global providers
        if isinstance(instrumentor, NamedAsyncioInstrumentor) and _contrib_asyncio_on():
            continue  # opentelemetry-instrument turned the contrib one on: not both
        try:
            instrumentor.instrument(**{**common, **extra})
        except Exception:
            logger.warning("could not enable %s", type(instrumentor).__name__, exc_info=True)
    store_telemetry = StoreInstrumentor().telemetry
    if store_telemetry is not None:
        store_telemetry.slow_query_seconds = options.thresholds.slow_query_s


def _contrib_asyncio_on() -> bool:
    from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

    instance = AsyncioInstrumentor._instance
    return instance is not None and bool(instance.is_instrumented_by_opentelemetry)


def _start_perf(telemetry: Telemetry, meter_provider: Any, logger_provider: Any) -> None:
    from otel_mcp.telemetry.cache import CacheInstrumentor
    from otel_mcp.telemetry.mcp import McpInstrumentor
    from otel_mcp.telemetry.store import StoreInstrumentor

    options = telemetry.options
    export_requests = os.environ.get(PERF_LOG_EXPORT_ENV, "all").strip().lower() != "slow"
    otel_logger: Any = None
    if logger_provider is not None and export_requests:
        otel_logger = logger_provider.get_logger("otel_mcp.perf", __version__)
        if telemetry.direct_logs is not None:
            otel_logger = otlp_wire.DirectLogger(telemetry.direct_logs, logger_provider.resource,
                                                 otel_logger._instrumentation_scope)
    perf = PerfLog(options.perf_log, options.perf_log_max_bytes, options.perf_log_backups, otel_logger,
                   options.perf_log_requests, options.perf_log_flush_s)
    perf.start()
    telemetry.perf = perf
    handler = PerfLogHandler(perf)
    perf_logger = logging.getLogger("otel_mcp.perf")
    perf_logger.addHandler(handler)
    telemetry._handlers.append((perf_logger, handler))

    cache_telemetry = CacheInstrumentor().telemetry
    alerts = Alerts(options.thresholds, meter_provider,
                    cache_counts=cache_telemetry.counts if cache_telemetry is not None else None, rss=_rss)
    telemetry.alerts = alerts
    mcp_telemetry = McpInstrumentor().telemetry
    if mcp_telemetry is not None:
        # perf.request only when it writes something: a call per request saved where it would return at once
        mcp_telemetry.observers[:] = [perf.request, alerts.on_request] if perf.log_requests else [alerts.on_request]
    store_telemetry = StoreInstrumentor().telemetry
    if store_telemetry is not None:
        store_telemetry.observers[:] = [alerts.on_slow_query]
    alerts.start(options.alert_interval)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)
