"""The otel-mcp Configurator: the providers, resource, Views, exporters and log pipeline of one process.

Registered under the ``opentelemetry_configurator`` entry point (name ``otel_mcp``), so
``opentelemetry-instrument`` runs it before the application; ``otel-mcp serve`` runs it through the same
``auto_instrumentation.initialize()`` (see ``distro.py``). ``build_pipeline`` does the work in the
Configurator's steps: exporters (``plan_exporters``), ``make_resource``, ``tracer_provider``,
``meter_provider``, ``logger_provider``. All of them are the stock SDK's objects, read from the standard
``OTEL_*`` variables; what is ours:

- OTLP goes to ``localhost:4317`` (``4318`` for ``http/protobuf``) only if something listens there at start,
  unless an endpoint is configured (one INFO line otherwise: telemetry stays in-process for
  ``otel-mcp://stats`` and ``/metrics``); exporter failures are logged at most once a minute per logger
  and counted (``dropped.py``);
- the finer ``mcp.server.operation.duration`` View (``names.FINE_DURATION_BUCKETS``);
- the reader ``otel-mcp://stats`` reads (``stats.py``) and, with ``metrics_endpoint`` or
  ``OTEL_METRICS_EXPORTER=prometheus``, the Prometheus reader behind ``GET /metrics``;
- ``service.name=otel-mcp`` unless ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name it;
- the ``otel_mcp`` Python loggers' records go to the logger provider.

It is not a subclass of the SDK's (private) ``_OTelSDKConfigurator``: ``opentelemetry-instrument`` only calls
``configure(**kwargs)``, and the SDK's initializer takes neither Views nor an extra metric reader.

Usage
-----
.. code-block:: python

    OtelMcpConfigurator().configure()          # what opentelemetry-instrument does
    pipeline = configured()                    # the providers it built (None before)

Configuration
-------------
``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``
(``otlp``, ``console``, ``none``; metrics also ``prometheus``), ``OTEL_EXPORTER_OTLP_*``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``, ``OTEL_BLRP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``; our settings ``metrics_endpoint``
(``OTEL_MCP_METRICS_ENDPOINT``).
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlparse

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import DropAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.semconv._incubating.attributes.service_attributes import SERVICE_INSTANCE_ID
from opentelemetry.semconv._incubating.metrics.mcp_metrics import MCP_SERVER_OPERATION_DURATION
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME, SERVICE_VERSION

from otel_mcp import __version__
from otel_mcp.telemetry import names
from otel_mcp.telemetry.dropped import (
    CountingBatchSpanProcessor,
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    register_dropped_counter,
)
from otel_mcp.telemetry.stats import MetricsSource, stats_reader_for

logger = logging.getLogger("otel_mcp.telemetry")

DEFAULT_SERVICE_NAME: Final = "otel-mcp"
DEFAULT_OTLP_GRPC: Final = ("localhost", 4317)
DEFAULT_OTLP_HTTP: Final = ("localhost", 4318)
PROBE_TIMEOUT: Final = 0.25  # seconds to find out whether a default collector listens
PSYCOPG_INSTRUMENTATION_SCOPE: Final = "opentelemetry.instrumentation.psycopg"
EXPORT_LOG_INTERVAL: Final = 60.0  # seconds between two exporter failure messages from one logger
_EXPORTER_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk._shared_internal",
)


@dataclass
class Pipeline:
    """What ``build_pipeline`` made; ``owned``: the providers built here (the only ones shut down)."""

    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    stats_reader: MetricsSource | None = None
    prometheus: bool = False
    exporting: dict[str, list[str]] = field(default_factory=dict)
    owned: list[Any] = field(default_factory=list)
    handlers: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)


_BUILT: list[Pipeline] = []  # the pipeline OtelMcpConfigurator built in this process (one at most)


def configured() -> Pipeline | None:
    """The pipeline ``OtelMcpConfigurator`` built in this process, if it ran."""
    return _BUILT[0] if _BUILT else None


class OtelMcpConfigurator:
    """``configure(**kwargs)`` builds the process's pipeline from ``os.environ`` and sets the global providers.

    :param metrics_endpoint: add the Prometheus reader (default: the ``metrics_endpoint`` setting, as
        ``otel_mcp.config.Settings`` reads it from the environment)
    """

    def configure(self, **kwargs: Any) -> None:
        import os

        if _truthy(os.environ.get("OTEL_SDK_DISABLED")) or _BUILT:
            return
        metrics_endpoint = kwargs.get("metrics_endpoint")
        if metrics_endpoint is None:
            metrics_endpoint = _settings_from_environment().metrics_endpoint
        extra = {}
        if kwargs.get("auto_instrumentation_version"):
            extra["telemetry.auto.version"] = str(kwargs["auto_instrumentation_version"])
        _BUILT.append(build_pipeline(os.environ, metrics_endpoint=bool(metrics_endpoint), resource_attributes=extra))


def build_pipeline(
    env: Mapping[str, str],
    *,
    metrics_endpoint: bool = False,
    fine_buckets: bool = True,
    set_global: bool = True,
    extra_metric_readers: tuple[MetricReader, ...] = (),
    resource_attributes: Mapping[str, str] | None = None,
) -> Pipeline:
    """The Configurator's steps; ``set_global=False`` (tests) leaves the global providers alone."""
    quiet_exporter_logs()
    protocol, exporting = plan_exporters(env)
    pipeline = Pipeline(prometheus=metrics_endpoint or "prometheus" in exporting["metrics"])
    exporting["metrics"] = [kind for kind in exporting["metrics"] if kind != "prometheus"]
    pipeline.exporting = exporting
    resource = make_resource(env, resource_attributes)
    if exporting["traces"]:  # none: the no-op tracer stays, spans cost (almost) nothing
        pipeline.tracer_provider = tracer_provider(resource, exporting["traces"], protocol)
    pipeline.meter_provider, pipeline.stats_reader = meter_provider(
        resource, exporting["metrics"], protocol, pipeline.prometheus, fine_buckets, extra_metric_readers)
    if exporting["logs"]:
        pipeline.logger_provider = logger_provider(resource, exporting["logs"], protocol)
    pipeline.owned = [p for p in (pipeline.tracer_provider, pipeline.meter_provider, pipeline.logger_provider) if p]
    if set_global:
        if pipeline.tracer_provider is not None:
            trace.set_tracer_provider(pipeline.tracer_provider)
        metrics.set_meter_provider(pipeline.meter_provider)
        if pipeline.logger_provider is not None:
            set_logger_provider(pipeline.logger_provider)
    if pipeline.logger_provider is not None:
        handler = LoggingHandler(level=logging.INFO, logger_provider=pipeline.logger_provider)
        target = logging.getLogger("otel_mcp")
        target.addHandler(handler)
        pipeline.handlers.append((target, handler))
    return pipeline


# -- step 1: exporters ----------------------------------------------------------------------


def plan_exporters(env: Mapping[str, str]) -> tuple[str, dict[str, list[str]]]:
    """(OTLP protocol, exporter kinds per signal); ``otlp`` is left out when no collector is reachable."""
    explicit, protocol, (host, port) = _otlp_endpoint(env)
    kinds = {signal.lower(): _exporters(env, signal) for signal in ("TRACES", "METRICS", "LOGS")}
    if any("otlp" in k for k in kinds.values()) and not (explicit or listening(host, port)):
        logger.info("no OTLP collector at %s:%d and none configured: telemetry stays in-process", host, port)
        for k in kinds.values():
            k.discard("otlp")
    return protocol, {signal: sorted(k) for signal, k in kinds.items()}


def _exporters(env: Mapping[str, str], signal: str) -> set[str]:
    raw = env.get(f"OTEL_{signal}_EXPORTER", "otlp")
    return {part.strip().lower() for part in raw.split(",") if part.strip()} - {"none"}


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


# signal -> (the OTLP/gRPC exporter's module, the OTLP/HTTP one's, the class); the ``_log_exporter`` modules are
# the log exporters' only import path (the logs signal is still beta)
_OTLP_EXPORTERS: Final = {
    "traces": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
               "opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    "metrics": ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
                "opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    "logs": ("opentelemetry.exporter.otlp.proto.grpc._log_exporter",
             "opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
}
_CONSOLE_EXPORTERS: Final[dict[str, Any]] = {
    "traces": ConsoleSpanExporter, "metrics": ConsoleMetricExporter, "logs": ConsoleLogRecordExporter,
}


def exporter(signal: str, kind: str, protocol: str) -> Any:
    """The SDK's exporter of ``kind`` (``console``, else OTLP over ``protocol``) for ``signal``."""
    if kind == "console":
        return _CONSOLE_EXPORTERS[signal]()
    grpc_module, http_module, name = _OTLP_EXPORTERS[signal]
    return getattr(importlib.import_module(grpc_module if protocol == "grpc" else http_module), name)()


# -- step 2: resource -----------------------------------------------------------------------


def make_resource(env: Mapping[str, str], attributes: Mapping[str, str] | None = None) -> Resource:
    """The SDK's resource (detectors, ``OTEL_RESOURCE_ATTRIBUTES``) with our version, an instance id and,
    unless the environment names the service, ``service.name=otel-mcp``."""
    attrs = {SERVICE_VERSION: __version__, SERVICE_INSTANCE_ID: str(uuid.uuid4()), **(attributes or {})}
    resource = Resource.create(attrs)
    named = env.get("OTEL_SERVICE_NAME") or f"{SERVICE_NAME}=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


# -- steps 3-5: providers -------------------------------------------------------------------


def tracer_provider(resource: Resource, kinds: list[str], protocol: str) -> TracerProvider:
    """The SDK's provider (sampler from ``OTEL_TRACES_SAMPLER``), a batch processor per exporter."""
    provider = TracerProvider(resource=resource)
    for kind in kinds:
        counting = CountingSpanExporter(exporter("traces", kind, protocol))
        provider.add_span_processor(CountingBatchSpanProcessor(counting))
    return provider


def operation_duration_view(fine: bool = True) -> View:
    """The documented View: ``FINE_DURATION_BUCKETS`` (sub-10 ms) for ``mcp.server.operation.duration``."""
    buckets = names.FINE_DURATION_BUCKETS if fine else names.SEMCONV_DURATION_BUCKETS
    return View(instrument_name=MCP_SERVER_OPERATION_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(list(buckets)))


def contrib_db_metrics_dropped() -> View:
    """Drops the psycopg instrumentation's ``db.client.operation.duration`` (it records through the global provider,
    and only for the statements it traces): ``store.StoreInstrumentor`` meters every statement, as for SQLite."""
    return View(meter_name=PSYCOPG_INSTRUMENTATION_SCOPE, aggregation=DropAggregation())


def meter_provider(
    resource: Resource, kinds: list[str], protocol: str, prometheus: bool, fine_buckets: bool = True,
    extra_readers: tuple[MetricReader, ...] = (),
) -> tuple[MeterProvider, MetricsSource]:
    """The SDK's provider with a periodic reader per exporter, the stats view's reader and our View."""
    readers: list[MetricReader] = []
    stats: MetricsSource | None = None
    for kind in kinds:
        counting: MetricExporter = CountingMetricExporter(exporter("metrics", kind, protocol))
        reader, source = stats_reader_for(counting) if stats is None else (None, None)
        readers.append(reader or PeriodicExportingMetricReader(counting))
        stats = stats or source
    if stats is None:
        in_memory = InMemoryMetricReader()  # a pull reader: it costs nothing until otel-mcp://stats is read
        readers.append(in_memory)
        stats = in_memory
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader())
    readers.extend(extra_readers)
    provider = MeterProvider(metric_readers=readers, resource=resource,
                             views=[operation_duration_view(fine_buckets), contrib_db_metrics_dropped()])
    register_dropped_counter(provider)
    return provider, stats


def logger_provider(resource: Resource, kinds: list[str], protocol: str) -> LoggerProvider:
    provider = LoggerProvider(resource=resource)
    for kind in kinds:
        counting = CountingLogExporter(exporter("logs", kind, protocol))
        provider.add_log_record_processor(BatchLogRecordProcessor(counting))
    return provider


# -- helpers --------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _settings_from_environment() -> Any:
    from otel_mcp.config import Settings
    from otel_mcp.errors import ConfigError

    try:
        return Settings.load()
    except ConfigError:
        return Settings()  # the server reports the bad value itself when it starts


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


__all__ = ["OtelMcpConfigurator", "Pipeline", "build_pipeline", "configured", "make_resource",
           "operation_duration_view"]
