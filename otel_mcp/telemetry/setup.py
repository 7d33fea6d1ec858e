"""Telemetry for one server process: the pipeline (``configurator.py``), then what needs our settings.

``setup_telemetry(settings)`` makes sure the process has the otel-mcp pipeline: under
``opentelemetry-instrument`` the ``OtelMcpDistro`` and ``OtelMcpConfigurator`` already built it; under
``otel-mcp serve`` it runs them now, through the same ``auto_instrumentation.initialize()`` (so both launch
paths make the same providers, resource, Views, exporters, log pipeline and instrumentors). Then it starts
what needs our settings: the JSON performance log (and its OTel log records) and the alert checks.
``Telemetry.attach(server, rules)`` registers ``otel-mcp://stats`` and ``/metrics`` and tells the
instrumentors about the server, the cache and the storage paths. ``Telemetry.shutdown()`` flushes all of it.

``OTEL_SDK_DISABLED=true`` turns all of it off: nothing is instrumented, the server behaves exactly as
without telemetry.

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
The standard ``OTEL_*`` variables (``configurator.py``, ``distro.py``). ``OTEL_MCP_PERF_LOG_EXPORT``: ``all``
(default: every JSON performance line also becomes an OTel log record when a logs exporter is set) or
``slow`` (only slow requests, slow queries and alerts do; the per-request record repeats what the request's
span already carries; see ``docs/performance.md`` for its cost). Our own settings
(``otel_mcp.config.Settings``): ``perf_log*``, ``alert_*``, ``metrics_endpoint``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_mcp import __version__
from otel_mcp.telemetry import configurator, distro
from otel_mcp.telemetry.dropped import DROPPED, queued_spans, register_dropped_counter
from otel_mcp.telemetry.perflog import Alerts, PerfLog, PerfLogHandler, Thresholds
from otel_mcp.telemetry.stats import MetricsSource

logger = logging.getLogger("otel_mcp.telemetry")

SHUTDOWN_TIMEOUT = 5.0  # seconds: flush at exit, all providers together
FAILING_SHUTDOWN_TIMEOUT = 1.0  # seconds, when the last export failed (backend down)
PERF_LOG_EXPORT_ENV = "OTEL_MCP_PERF_LOG_EXPORT"  # all | slow: which perf-log lines become OTel log records
METRICS_ENDPOINT_ENV = "OTEL_MCP_METRICS_ENDPOINT"
FINE_BUCKETS = True  # the finer operation-duration View (configurator.operation_duration_view)


@dataclass(frozen=True)
class TelemetryOptions:
    """Our settings that shape telemetry (the rest comes from ``OTEL_*``); defaults: ``otel_mcp.config``.

    :param perf_log: JSON performance log file (None: none)
    :param perf_log_max_bytes: rotate at this size
    :param perf_log_backups: rotated files kept
    :param perf_log_flush_s: longest wait before queued lines are written
    :param metrics_endpoint: serve ``GET /metrics`` on the HTTP transport
    :param alert_interval: seconds between the periodic alert checks (default 15)
    """

    perf_log: Path | None
    perf_log_max_bytes: int
    perf_log_backups: int
    perf_log_flush_s: float
    metrics_endpoint: bool
    thresholds: Thresholds
    db_path: Path | None = None
    cache_dir: Path | None = None
    perf_log_requests: bool = True
    alert_interval: float = 15.0

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> TelemetryOptions:
        """From ``otel_mcp.config.Settings`` (its defaults when None); ``overrides`` replace fields."""
        from otel_mcp.config import Settings

        s = settings if settings is not None else Settings()
        perf_log = s.perf_log
        if perf_log is None or str(perf_log) == "":
            perf_log = Path(s.state_dir) / "perf.log"
        elif str(perf_log) in ("-", "off", "none"):
            perf_log = None
        values: dict[str, Any] = {
            "perf_log": Path(perf_log) if perf_log is not None else None,
            "perf_log_max_bytes": s.perf_log_max_bytes,
            "perf_log_backups": s.perf_log_backups,
            "perf_log_flush_s": s.perf_log_flush_ms / 1000,
            "metrics_endpoint": s.metrics_endpoint,
            "thresholds": Thresholds(
                slow_request_s=s.alert_slow_request_ms / 1000,
                slow_query_s=s.alert_slow_query_ms / 1000,
                min_cache_hit_ratio=s.alert_min_cache_hit_percent / 100,
                max_rss_bytes=s.alert_max_rss_mb * 2**20,
            ),
            "db_path": s.db if isinstance(s.db, Path) else None,  # a file to size; not a server database
            "cache_dir": s.cache_dir,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Telemetry:
    """What ``setup_telemetry`` built; ``shutdown()`` once at exit."""

    enabled: bool
    options: TelemetryOptions = field(default_factory=TelemetryOptions.from_settings)
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    owns_providers: bool = False
    owned: list[Any] = field(default_factory=list)  # the providers built here: the only ones shut down
    stats_reader: MetricsSource | None = None  # what otel-mcp://stats reads (see ``stats.py``)
    prometheus: bool = False
    perf: PerfLog | None = None
    alerts: Alerts | None = None
    exporting: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    _handlers: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)

    def use(self, pipeline: configurator.Pipeline) -> None:
        self.tracer_provider = pipeline.tracer_provider
        self.meter_provider = pipeline.meter_provider
        self.logger_provider = pipeline.logger_provider
        self.stats_reader = pipeline.stats_reader
        self.prometheus = pipeline.prometheus
        self.exporting = pipeline.exporting
        self.owned = list(pipeline.owned)
        self.owns_providers = bool(self.owned)
        self._handlers.extend(pipeline.handlers)

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
        if worker.is_alive():  # said once, with what is lost: the exit is not held for it
            queued = queued_spans()
            logger.warning("telemetry flush did not finish within %.0fs (backend down or slow): dropped at exit: "
                           "%s spans still queued and the batches being sent; dropped before: %s", timeout,
                           "unknown" if queued is None else queued, DROPPED.snapshot() or "none")
        if self.perf is not None:
            self.perf.close()
        for target, handler in self._handlers:
            target.removeHandler(handler)
        self._handlers.clear()


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

    Tests pass an ``env`` of their own, or their own providers (in-memory exporters), and ``set_global=False``:
    the pipeline is then built (or taken) without touching the global providers, and the instrumentors are
    loaded by the same ``OtelMcpDistro.load_instrumentor`` with those providers.
    """
    options = options or TelemetryOptions.from_settings(settings)
    environment = os.environ if env is None else env
    if configurator._truthy(environment.get("OTEL_SDK_DISABLED")):
        return Telemetry(enabled=False, options=options)
    telemetry = Telemetry(enabled=True, options=options)
    given = tracer_provider is not None or meter_provider is not None or logger_provider is not None
    if env is None and set_global and not given and not extra_metric_readers:
        pipeline = _process_pipeline(options)
    elif given:
        pipeline = configurator.Pipeline(tracer_provider, meter_provider or _meter_provider(), logger_provider)
        if meter_provider is None:
            pipeline.owned.append(pipeline.meter_provider)
        if isinstance(meter_provider, MeterProvider):
            register_dropped_counter(meter_provider)
        _instrument(pipeline)
    else:
        os.environ.setdefault(distro.SEMCONV_OPT_IN, distro.DEFAULTS[distro.SEMCONV_OPT_IN])
        pipeline = configurator.build_pipeline(environment, metrics_endpoint=options.metrics_endpoint,
                                               fine_buckets=FINE_BUCKETS, set_global=set_global,
                                               extra_metric_readers=extra_metric_readers)
        _instrument(pipeline)
    telemetry.use(pipeline)
    from otel_mcp.telemetry import sdk_internals

    sdk_internals.announce()
    store_telemetry = _store_telemetry()
    if store_telemetry is not None:
        store_telemetry.slow_query_seconds = options.thresholds.slow_query_s
    from otel_mcp.telemetry.resources import ResourceInstrumentor

    ResourceInstrumentor.track_paths(options.db_path, options.cache_dir)
    _start_perf(telemetry, telemetry.meter_provider, telemetry.logger_provider)
    return telemetry


def _process_pipeline(options: TelemetryOptions) -> configurator.Pipeline:
    """The pipeline ``opentelemetry-instrument`` had our Configurator build, or the one built now the same way
    (``initialize()``: our Distro, our Configurator, every installed instrumentor)."""
    pipeline = configurator.configured()
    if pipeline is None:
        from opentelemetry.instrumentation.auto_instrumentation import initialize

        distro.configure_environment()
        if options.metrics_endpoint:  # a command-line flag: the Configurator reads the setting's variable
            os.environ[METRICS_ENDPOINT_ENV] = "true"
        initialize(swallow_exceptions=False)
        pipeline = configurator.configured()
    elif options.metrics_endpoint and not pipeline.prometheus:
        logger.warning("--metrics-endpoint given on the command line under opentelemetry-instrument: the pipeline "
                       "was built before it was read; set OTEL_MCP_METRICS_ENDPOINT=true instead")
    if pipeline is None:  # another distribution's configurator ran: use its global providers as they are
        logger.info("telemetry: the global providers of another OpenTelemetry configurator are used; "
                    "otel-mcp://stats has no request figures")
        pipeline = configurator.Pipeline(
            trace.get_tracer_provider() if isinstance(trace.get_tracer_provider(), TracerProvider) else None,
            metrics.get_meter_provider(),
            get_logger_provider() if isinstance(get_logger_provider(), LoggerProvider) else None)
    return pipeline


def _meter_provider() -> MeterProvider:
    return MeterProvider(metric_readers=[InMemoryMetricReader()],
                         views=[configurator.operation_duration_view(FINE_BUCKETS)])


def _instrument(pipeline: configurator.Pipeline) -> None:
    """Every installed instrumentor, as ``OtelMcpDistro`` loads it, with the pipeline's providers."""
    from importlib.metadata import entry_points

    kwargs = {"tracer_provider": pipeline.tracer_provider, "meter_provider": pipeline.meter_provider}
    loader = distro.OtelMcpDistro()
    disabled = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    for entry_point in entry_points(group="opentelemetry_instrumentor"):
        if entry_point.name in disabled:
            continue
        try:
            loader.load_instrumentor(entry_point, **kwargs)
        except Exception:
            logger.warning("could not enable %s", entry_point.name, exc_info=True)


def _store_telemetry() -> Any:
    from otel_mcp.telemetry.store import StoreInstrumentor

    return StoreInstrumentor().telemetry


def _start_perf(telemetry: Telemetry, meter_provider: Any, logger_provider: Any) -> None:
    from otel_mcp.telemetry.cache import CacheInstrumentor
    from otel_mcp.telemetry.mcp import McpInstrumentor

    options = telemetry.options
    export_requests = os.environ.get(PERF_LOG_EXPORT_ENV, "all").strip().lower() != "slow"
    otel_logger: Any = None
    if logger_provider is not None and export_requests:
        otel_logger = logger_provider.get_logger("otel_mcp.perf", __version__)
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
    store_telemetry = _store_telemetry()
    if store_telemetry is not None:
        store_telemetry.observers[:] = [alerts.on_slow_query]
    alerts.start(options.alert_interval)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)
