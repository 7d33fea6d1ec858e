"""The otel-mcp OpenTelemetry distribution: the defaults and instrumentor choices of both launch paths.

``opentelemetry-instrument otel-mcp serve`` loads ``OtelMcpDistro`` (entry point ``opentelemetry_distro``,
name ``otel_mcp``) and ``configurator.OtelMcpConfigurator`` before any application code; ``otel-mcp serve``
runs the same two through ``opentelemetry.instrumentation.auto_instrumentation.initialize()``
(``setup.setup_telemetry``). Either way one pipeline is built.

``OtelMcpDistro._configure`` only sets *defaults* in the environment (``DEFAULTS``, with
``os.environ.setdefault``): whatever the user set wins, and the SDK reads the variables as it always does.
``load_instrumentor`` makes the per-instrumentor choices, in the pattern of opentelemetry-distro and
Elastic's EDOT Python:

- ``asyncio``: our ``tasks.NamedAsyncioInstrumentor`` (the contrib one restricted to named work);
- ``system_metrics``: skipped, ``resources.ResourceInstrumentor`` runs it with our metric subset;
- ``sqlite3``: spans only (``store.StoreInstrumentor`` records the database metrics), and only when a
  tracer provider records spans;
- ``psycopg``: the same, and only once ``psycopg`` is imported (a SQLite server never loads it); it does not
  forward a meter provider, so ``configurator.meter_provider`` drops its metrics with a View;
- every other entry point (ours and any contrib instrumentation the user installed): as is.

Usage
-----
.. code-block:: shell

    OTEL_PYTHON_DISTRO=otel_mcp OTEL_PYTHON_CONFIGURATOR=otel_mcp opentelemetry-instrument otel-mcp serve

Configuration
-------------
``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` (``otel_mcp``: needed only when another distribution
is installed too), ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, and every variable in ``DEFAULTS``.
"""

from __future__ import annotations

import os
from typing import Any, Final

from opentelemetry.environment_variables import OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_EXPORTER_OTLP_PROTOCOL,
)

NAME: Final = "otel_mcp"  # the entry-point name of the distro and of the configurator
DB_SPAN_ONLY: Final = frozenset({"sqlite3", "psycopg"})  # contrib DB instrumentations kept for their spans
SEMCONV_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"

DEFAULTS: Final[dict[str, str]] = {
    OTEL_TRACES_EXPORTER: "otlp",
    OTEL_METRICS_EXPORTER: "otlp",
    OTEL_LOGS_EXPORTER: "otlp",
    OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    # The contrib DB instrumentations emit the old names (db.system, db.statement) unless told to follow the
    # stable database conventions (db.system.name, db.query.text).
    SEMCONV_OPT_IN: "database",
    # A 512-span export (the SDK's batch) holds the GIL for ~13 ms and stalls the event loop; 64 do not.
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "64",
    OTEL_BSP_SCHEDULE_DELAY: "1000",  # ms
    OTEL_BSP_MAX_QUEUE_SIZE: "4096",  # spans: a burst of 8 clients x 500 requests fits
}


class OtelMcpDistro(BaseDistro):  # type: ignore[misc]
    """Sets ``DEFAULTS`` and chooses how each instrumentor is loaded (see the module docstring)."""

    def _configure(self, **kwargs: Any) -> None:
        for name, value in DEFAULTS.items():
            os.environ.setdefault(name, value)

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        name = entry_point.name
        if name == "system_metrics":
            return  # ResourceInstrumentor runs it, narrowed to names.SYSTEM_METRICS
        if name == "asyncio":
            from otel_mcp.telemetry.tasks import NamedAsyncioInstrumentor

            NamedAsyncioInstrumentor().instrument(**kwargs)
            return
        if name in DB_SPAN_ONLY:
            from opentelemetry.metrics import NoOpMeterProvider

            from otel_mcp.telemetry.state import records_spans

            if not records_spans(kwargs.get("tracer_provider")):
                return  # it only makes spans
            kwargs = {**kwargs, "meter_provider": NoOpMeterProvider()}
        if name == "psycopg":
            import wrapt

            wrapt.when_imported("psycopg")(lambda _module: entry_point.load()().instrument(**kwargs))
            return
        entry_point.load()().instrument(**kwargs)


def configure_environment() -> None:
    """Make ``initialize()`` load this distribution and configurator unless the user named others."""
    os.environ.setdefault("OTEL_PYTHON_DISTRO", NAME)
    os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", NAME)


__all__ = ["DEFAULTS", "NAME", "OtelMcpDistro", "configure_environment"]
