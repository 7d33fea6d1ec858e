"""Telemetry test support: a real SDK pipeline with in-memory exporters.

The mcp SDK's tracer (``mcp-python-sdk``) follows the *global* tracer
provider, which can be set once per process: one session-wide
``TracerProvider`` with an ``InMemorySpanExporter`` is installed and cleared
before each test. Meter providers are per test (``InMemoryMetricReader``) and
handed to the instrumentors; ``otel`` instruments everything and uninstruments
it at teardown.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_mcp.config import Settings
from otel_mcp.server.app import build_http_app, build_server
from otel_mcp.server.context import RulesContext
from otel_mcp.telemetry.setup import Telemetry

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)

NO_EXPORT = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


@dataclass
class Otel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    telemetry: Telemetry
    settings: Settings
    tmp: Path

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        out: dict[str, Metric] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = m
        return out

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        return list(metric.data.data_points) if metric is not None else []

    def histogram_points(self, name: str) -> list[HistogramDataPoint]:
        return [p for p in self.points(name) if isinstance(p, HistogramDataPoint)]


def uninstrument_all() -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    from otel_mcp.telemetry.cache import CacheInstrumentor
    from otel_mcp.telemetry.compose import ComposeInstrumentor
    from otel_mcp.telemetry.mcp import McpInstrumentor
    from otel_mcp.telemetry.resources import ResourceInstrumentor
    from otel_mcp.telemetry.store import StoreInstrumentor
    from otel_mcp.telemetry.tasks import NamedAsyncioInstrumentor

    for instrumentor in (McpInstrumentor(), ComposeInstrumentor(), StoreInstrumentor(), CacheInstrumentor(),
                         ResourceInstrumentor(), SQLite3Instrumentor(), PsycopgInstrumentor(),
                         NamedAsyncioInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def make_settings(tmp: Path, **extra: Any) -> Settings:
    flags = {"db": str(tmp / "rules.db"), "state_dir": str(tmp / "state"), "cache_dir": str(tmp / "cache"),
             "files_root": str(tmp)}
    flags.update({k: str(v) for k, v in extra.items()})
    return Settings.load(flags, env={})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedUvicorn:
    """An ASGI app served by uvicorn on a thread of this process, on a real TCP port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> ThreadedUvicorn:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def instrumented_server(otel: Otel) -> Iterator[tuple[Any, RulesContext]]:
    """The MCP server on its own rules, with ``otel``'s telemetry attached; the rules closed after."""
    rules = RulesContext.open(otel.settings)
    server = build_server(rules)
    otel.telemetry.attach(server, rules)
    try:
        yield server, rules
    finally:
        rules.close()


@contextmanager
def instrumented_http(otel: Otel) -> Iterator[ThreadedUvicorn]:
    """``instrumented_server`` over streamable HTTP on a real port."""
    with instrumented_server(otel) as (server, rules), ThreadedUvicorn(build_http_app(server, rules)) as web:
        yield web
