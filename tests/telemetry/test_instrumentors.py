"""Each instrumentor on its own: instrument, uninstrument, no-op providers, suppression, error status.

And the asyncio instrumentation (``NamedAsyncioInstrumentor``): only named coroutines are timed and traced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import NoOpTracerProvider, StatusCode
from telemetry_support import _EXPORTER, _PROVIDER, make_settings, uninstrument_all

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.compose.service import ComposeService
from otel_mcp.errors import CompositionError
from otel_mcp.store import RuleStore
from otel_mcp.telemetry import names
from otel_mcp.telemetry.cache import CacheInstrumentor
from otel_mcp.telemetry.compose import ComposeInstrumentor
from otel_mcp.telemetry.mcp import McpInstrumentor, TelemetryMiddleware
from otel_mcp.telemetry.resources import ResourceInstrumentor
from otel_mcp.telemetry.store import StoreInstrumentor
from otel_mcp.telemetry.tasks import NamedAsyncioInstrumentor


@dataclass
class Pipeline:
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
                for p in m.data.data_points]

    def count(self, name: str) -> int:
        return sum(getattr(p, "count", None) or getattr(p, "value", 0) for p in self.points(name))


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    uninstrument_all()
    if NamedAsyncioInstrumentor().is_instrumented_by_opentelemetry:
        NamedAsyncioInstrumentor().uninstrument()
    _EXPORTER.clear()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield Pipeline(reader, provider)
    _KEEP.clear()
    uninstrument_all()
    if NamedAsyncioInstrumentor().is_instrumented_by_opentelemetry:
        NamedAsyncioInstrumentor().uninstrument()
    provider.shutdown()
    _EXPORTER.clear()


def _store(tmp: Path) -> RuleStore:
    store = RuleStore(tmp / "rules.db")
    store.create({"id": "base", "body": "b", "activation": "always"})
    store.create({"id": "py", "body": "p", "activation": "auto", "globs": ["**/*.py"], "imports": ["base"]})
    return store


# -- one exercise per instrumentor: (do something, the metric it records, spans it makes) ------------------


def _compose(tmp: Path) -> None:
    store = _store(tmp)
    try:
        ComposeService(store).compose(ComposeRequest.from_args(["a.py"]))
    finally:
        store.close()


def _compose_error(tmp: Path) -> None:
    store = _store(tmp)
    try:
        with contextlib.suppress(CompositionError):
            ComposeService(store).compose(ComposeRequest.from_args(rule_ids=["missing"]))
    finally:
        store.close()


def _db(tmp: Path) -> None:
    store = _store(tmp)
    try:
        store.get("py")
    finally:
        store.close()


def _db_error(tmp: Path) -> None:
    store = _store(tmp)
    try:
        with contextlib.suppress(Exception):
            store._conn().execute("SELECT * FROM no_such_table")
    finally:
        store.close()


_KEEP: list[Any] = []


def _cache(tmp: Path) -> None:
    from otel_mcp.cache.core import TieredCache

    store = _store(tmp)
    cache = TieredCache(tmp / "l2")
    try:
        service = ComposeService(store, cache)
        for _ in range(3):
            service.compose(ComposeRequest.from_args(["a.py"]))
    finally:
        cache.close()
        store.close()
    _KEEP.append(cache)  # the instrumentor holds caches weakly: keep it for the counters to be read


def _mcp(tmp: Path) -> None:
    from otel_mcp.server.app import build_server
    from otel_mcp.server.context import RulesContext

    async def run() -> None:
        rules = RulesContext.open(make_settings(tmp))
        try:
            async with Client(build_server(rules)) as client:
                await client.list_tools()
                failed = await client.call_tool("get_rule", {"id": "missing"})
                assert failed.is_error
        finally:
            rules.close()

    asyncio.run(run())


CASES: dict[str, tuple[Callable[[], Any], Callable[[Path], None], str, str | None]] = {
    # name: (instrumentor, exercise, metric recorded, span name made)
    "mcp": (McpInstrumentor, _mcp, "mcp.server.operation.duration", "tools/list"),
    "compose": (ComposeInstrumentor, _compose, names.COMPOSE_DURATION, names.SPAN_COMPOSE),
    "store": (StoreInstrumentor, _db, "db.client.operation.duration", None),
    "cache": (CacheInstrumentor, _cache, names.CACHE_REQUESTS, None),
}


def _instrument(factory: Callable[[], Any], tracer_provider: Any, meter_provider: Any) -> Any:
    instrumentor = factory()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return instrumentor


def _span_names() -> set[str]:
    return {s.name for s in _EXPORTER.get_finished_spans()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_instrument_then_uninstrument(case: str, pipeline: Pipeline, tmp_path: Path) -> None:
    factory, exercise, metric, span = CASES[case]
    instrumentor = _instrument(factory, _PROVIDER, pipeline.meter_provider)
    assert instrumentor.is_instrumented_by_opentelemetry
    exercise(tmp_path / "a")
    recorded = pipeline.count(metric)
    assert recorded > 0
    if span is not None:
        assert span in _span_names()
    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
    _EXPORTER.clear()
    exercise(tmp_path / "b")
    if case != "cache":  # observable counters read the caches they were given; the others record nothing more
        assert pipeline.count(metric) == recorded
    if case == "mcp":  # the SDK's span stays (it is the SDK's), without what we add to it
        sdk_span = next(s for s in _EXPORTER.get_finished_spans() if s.name == span)
        assert sdk_span.attributes is not None and "network.transport" not in sdk_span.attributes
    elif span is not None:
        assert span not in _span_names()


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_op_providers(case: str, pipeline: Pipeline, tmp_path: Path) -> None:
    """API-only (no SDK) providers: everything works and nothing is recorded."""
    factory, exercise, _, _ = CASES[case]
    instrumentor = _instrument(factory, NoOpTracerProvider(), NoOpMeterProvider())
    exercise(tmp_path)
    assert _EXPORTER.get_finished_spans() == () or all(
        s.instrumentation_scope is not None and s.instrumentation_scope.name == "mcp-python-sdk"
        for s in _EXPORTER.get_finished_spans()
    )  # only the SDK's own span (it follows the global provider), none of ours
    instrumentor.uninstrument()


@pytest.mark.parametrize("case", ["mcp", "compose", "store"])
def test_suppressed_instrumentation_records_nothing(case: str, pipeline: Pipeline, tmp_path: Path) -> None:
    factory, exercise, metric, span = CASES[case]
    _instrument(factory, _PROVIDER, pipeline.meter_provider)
    with suppress_instrumentation():
        exercise(tmp_path)
    assert pipeline.count(metric) == 0
    if span is not None and case != "mcp":  # the SDK's span is the SDK's business
        assert span not in _span_names()


def test_error_status_compose(pipeline: Pipeline, tmp_path: Path) -> None:
    _instrument(ComposeInstrumentor, _PROVIDER, pipeline.meter_provider)
    _compose_error(tmp_path)
    compose = next(s for s in _EXPORTER.get_finished_spans() if s.name == names.SPAN_COMPOSE)
    assert compose.status.status_code is StatusCode.ERROR
    assert compose.attributes is not None and compose.attributes["error.type"] == "CompositionError"


def test_error_status_store(pipeline: Pipeline, tmp_path: Path) -> None:
    _instrument(StoreInstrumentor, _PROVIDER, pipeline.meter_provider)
    _db_error(tmp_path)
    failed = [p for p in pipeline.points("db.client.operation.duration") if "error.type" in p.attributes]
    assert [p.attributes["error.type"] for p in failed] == ["OperationalError"]


def test_error_status_mcp(pipeline: Pipeline, tmp_path: Path) -> None:
    _instrument(McpInstrumentor, _PROVIDER, pipeline.meter_provider)
    _mcp(tmp_path)
    span = next(s for s in _EXPORTER.get_finished_spans() if s.name == "tools/call get_rule")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == names.TOOL_ERROR
    errors = pipeline.points(names.TOOL_ERRORS)
    assert [(p.attributes["gen_ai.tool.name"], p.value) for p in errors] == [("get_rule", 1)]


def test_mcp_span_wrapper_only_with_a_recording_provider(pipeline: Pipeline) -> None:
    from mcp.server import _otel as sdk_otel

    plain = sdk_otel.otel_span
    instrumentor = _instrument(McpInstrumentor, None, pipeline.meter_provider)  # global: the test SDK provider
    assert sdk_otel.otel_span is not plain
    instrumentor.uninstrument()
    assert sdk_otel.otel_span is plain
    with _global_tracer_provider_none():
        instrumentor = _instrument(McpInstrumentor, None, pipeline.meter_provider)
        assert sdk_otel.otel_span is plain  # metrics only: nothing to fix in a span nobody records
        assert McpInstrumentor._middleware is not None and isinstance(McpInstrumentor._middleware, TelemetryMiddleware)
        instrumentor.uninstrument()


def test_compose_cache_hit_mark_only_with_a_recording_provider(pipeline: Pipeline) -> None:
    """The composition service is replaced (for the cache-hit mark) only where a span can record it, and
    restored by ``uninstrument``."""
    from otel_mcp.compose.service import ComposeService

    plain = ComposeService.compose
    instrumentor = _instrument(ComposeInstrumentor, None, pipeline.meter_provider)  # global: the test SDK provider
    assert ComposeService.compose is not plain and ComposeService.compose.__wrapped__ is plain
    instrumentor.uninstrument()
    assert ComposeService.compose is plain
    with _global_tracer_provider_none():
        instrumentor = _instrument(ComposeInstrumentor, None, pipeline.meter_provider)
        assert ComposeService.compose is plain
        instrumentor.uninstrument()


@contextlib.contextmanager
def _global_tracer_provider_none() -> Iterator[None]:
    from opentelemetry import trace

    saved = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = None  # as in a process where nobody set one (the proxy answers)
    try:
        yield
    finally:
        trace._TRACER_PROVIDER = saved


def test_resources_instrument_uninstrument_and_no_op(pipeline: Pipeline, tmp_path: Path) -> None:
    db = tmp_path / "rules.db"
    _store(tmp_path).close()
    instrumentor = _instrument(ResourceInstrumentor, None, pipeline.meter_provider)
    instrumentor.uninstrument()
    ResourceInstrumentor().instrument(meter_provider=pipeline.meter_provider, db_path=db)
    assert pipeline.points("process.memory.usage")
    assert [p.attributes[names.COMPONENT] for p in pipeline.points(names.STORAGE_SIZE)] == ["database"]
    ResourceInstrumentor().uninstrument()
    assert not ResourceInstrumentor().is_instrumented_by_opentelemetry
    ResourceInstrumentor().instrument(meter_provider=NoOpMeterProvider())
    ResourceInstrumentor().uninstrument()


# -- asyncio ------------------------------------------------------------------------------------------------


async def named_job() -> int:
    await asyncio.sleep(0)
    return 1


async def other_job() -> int:
    await asyncio.sleep(0)
    return 2


async def failing_job() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


def test_asyncio_only_named_coroutines(pipeline: Pipeline, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE", "named_job, failing_job")
    instrumentor = _instrument(NamedAsyncioInstrumentor, _PROVIDER, pipeline.meter_provider)

    async def main() -> None:
        assert await asyncio.create_task(named_job()) == 1
        assert await asyncio.create_task(other_job()) == 2
        assert await asyncio.gather(named_job(), other_job()) == [1, 2]
        with contextlib.suppress(ValueError):
            await asyncio.ensure_future(failing_job())

    asyncio.run(main())
    spans = [s for s in _EXPORTER.get_finished_spans() if s.name.startswith("asyncio")]
    assert sorted(s.name for s in spans) == ["asyncio coro-failing_job", "asyncio coro-named_job",
                                             "asyncio coro-named_job"]
    failed = next(s for s in spans if s.name == "asyncio coro-failing_job")
    assert failed.status.status_code is StatusCode.ERROR
    durations = pipeline.points("asyncio.process.duration")
    assert {p.attributes["name"] for p in durations} == {"named_job", "failing_job"}  # other_job: untouched
    instrumentor.uninstrument()
    _EXPORTER.clear()
    asyncio.run(main())
    assert not [s for s in _EXPORTER.get_finished_spans() if s.name.startswith("asyncio")]


def test_asyncio_with_no_names_touches_nothing(pipeline: Pipeline, monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE", raising=False)
    _instrument(NamedAsyncioInstrumentor, _PROVIDER, pipeline.meter_provider)
    coro = named_job()
    assert NamedAsyncioInstrumentor().trace_item(coro) is coro  # passed through, not wrapped
    assert asyncio.run(coro) == 1
    assert not pipeline.points("asyncio.process.duration")
    assert not pipeline.points("asyncio.process.created")
    for function in (*AsyncioInstrumentor.methods_with_coroutine, "gather", "to_thread"):
        assert not hasattr(getattr(asyncio, function), "__wrapped__"), function  # nothing wrapped at all
    assert not hasattr(asyncio.TaskGroup.create_task, "__wrapped__")


def test_asyncio_wraps_only_what_a_name_needs(pipeline: Pipeline, monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE", raising=False)
    monkeypatch.setenv("OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE", "blocking_job")
    instrumentor = _instrument(NamedAsyncioInstrumentor, _PROVIDER, pipeline.meter_provider)
    assert hasattr(asyncio.to_thread, "__wrapped__")
    assert not hasattr(asyncio.run_coroutine_threadsafe, "__wrapped__")

    def blocking_job() -> int:
        return 3

    assert asyncio.run(asyncio.to_thread(blocking_job)) == 3
    assert [s.name for s in _EXPORTER.get_finished_spans() if s.name.startswith("asyncio")] == [
        "asyncio to_thread-blocking_job"]
    instrumentor.uninstrument()
    assert not hasattr(asyncio.to_thread, "__wrapped__")


def test_asyncio_suppressed_and_no_op(pipeline: Pipeline, monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE", "named_job")
    _instrument(NamedAsyncioInstrumentor, NoOpTracerProvider(), NoOpMeterProvider())
    assert asyncio.run(named_job()) == 1

    async def main() -> int:
        return await asyncio.create_task(named_job())

    assert asyncio.run(main()) == 1
    assert not [s for s in _EXPORTER.get_finished_spans() if s.name.startswith("asyncio")]
