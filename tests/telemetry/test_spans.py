"""LeanTracerProvider makes the spans the SDK's TracerProvider makes: same fields, same exported bytes."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from otel_mcp.telemetry.spans import LeanAttributes, LeanSpan, LeanTracerProvider

ATTRIBUTES: dict[str, Any] = {
    "s": "text", "long": "x" * 40, "t": True, "i": 42, "big": 2**62, "d": 0.25, "strs": ["a", "b"],
    "ints": (1, 2), "none": None, "object": object.__name__, "bytes": b"\x00\x01",
}


class CountingIds(IdGenerator):
    """Deterministic ids, so that two providers' spans can be compared byte for byte."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._ids)

    def generate_trace_id(self) -> int:
        return 0xABC000 + next(self._ids)


def _provider(cls: type[TracerProvider], **kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = cls(resource=Resource({"service.name": "t"}), id_generator=CountingIds(), **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _both(scenario: Callable[[Any], None], **kwargs: Any) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    out = []
    for cls in (TracerProvider, LeanTracerProvider):
        provider, exporter = _provider(cls, **kwargs)
        scenario(provider.get_tracer("otel_mcp.test", "1.0"))
        out.append(list(exporter.get_finished_spans()))
    return out[0], out[1]


def _timed(tracer: Any) -> None:
    """Everything a span can carry, at fixed times (so the bytes can match)."""
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    span = tracer.start_span("tools/call compose_rules", kind=SpanKind.SERVER, attributes=ATTRIBUTES,
                             links=[Link(remote, {"link": "yes"})], start_time=1_000)
    span.set_attribute("mcp.session.id", "abc")
    span.set_attribute("s", "set again")  # moves to the end
    span.set_attribute("weird", {"nested": 1})
    span.set_attribute("", "empty key dropped")
    span.set_attributes({"client.port": 5, "ratio": 0.5, "flags": [True]})
    span.add_event("cache hit", {"tier": "l1"}, timestamp=1_500)
    span.add_link(remote, {"late": 1})
    span.update_name("tools/call renamed")
    span.set_status(Status(StatusCode.ERROR, "tool_error"))
    child = tracer.start_span("child", context=None, start_time=1_100)
    child.end(end_time=1_200)
    span.end(end_time=2_000)
    span.set_attribute("after", "end")  # ignored, as by the SDK


def test_lean_spans_export_the_sdks_bytes() -> None:
    sdk, lean = _both(_timed)
    assert len(sdk) == len(lean) == 2
    assert all(type(span) is LeanSpan for span in lean)
    assert encode_spans(lean).SerializeToString() == encode_spans(sdk).SerializeToString()
    assert [dict(s.attributes or {}) for s in lean] == [dict(s.attributes or {}) for s in sdk]
    assert [s.dropped_attributes for s in lean] == [s.dropped_attributes for s in sdk] == [0, 1]
    assert list(lean[1].attributes or {})[-1] == "flags"


@pytest.mark.parametrize("limits", [
    SpanLimits(max_span_attributes=3), SpanLimits(max_span_attribute_length=5), SpanLimits(max_span_attributes=0),
    SpanLimits(max_events=1, max_links=0, max_attributes=2),
])
def test_span_limits_drop_and_truncate_as_the_sdk_does(limits: SpanLimits) -> None:
    sdk, lean = _both(_timed, span_limits=limits)
    assert encode_spans(lean).SerializeToString() == encode_spans(sdk).SerializeToString()
    assert [(s.dropped_attributes, s.dropped_events, s.dropped_links) for s in lean] == \
        [(s.dropped_attributes, s.dropped_events, s.dropped_links) for s in sdk]


def test_a_lean_span_has_every_field_of_an_sdk_span() -> None:
    """An SDK upgrade that adds a field to its span fails here, not in production."""
    fields = []
    for cls in (TracerProvider, LeanTracerProvider):
        provider, _ = _provider(cls)
        span = provider.get_tracer("t").start_span("x")
        fields.append(set(vars(span)))
        span.end()
    assert fields[0] <= fields[1]
    assert fields[1] - fields[0] == {"_on_ending_hook"}  # its one field of its own


def _current_span_cases(tracer: Any) -> None:
    with tracer.start_as_current_span("outer", attributes={"a": 1}) as outer, \
            tracer.start_as_current_span("inner") as inner:
        assert inner.parent.span_id == outer.get_span_context().span_id
    with pytest.raises(ValueError), tracer.start_as_current_span("raises"):
        raise ValueError("boom")
    with pytest.raises(ValueError), \
            tracer.start_as_current_span("quiet", record_exception=False, set_status_on_exception=False):
        raise ValueError("not recorded")
    with tracer.start_as_current_span("kept open", end_on_exit=False) as open_span:
        pass
    assert open_span.is_recording()
    open_span.end()

    @tracer.start_as_current_span("decorated")
    def decorated() -> int:
        return 7

    @tracer.start_as_current_span("decorated async")
    async def decorated_async() -> int:
        return 8

    assert decorated() == 7
    assert asyncio.run(decorated_async()) == 8


def test_start_as_current_span_nests_records_and_decorates_as_the_sdk_does() -> None:
    sdk, lean = _both(_current_span_cases)

    def shape(spans: list[ReadableSpan]) -> list[Any]:
        return [(s.name, s.parent is not None, s.status.status_code, s.status.description,
                 [(e.name, dict(e.attributes or {}).get("exception.type")) for e in s.events]) for s in spans]

    assert shape(lean) == shape(sdk)
    assert [s.name for s in lean] == ["inner", "outer", "raises", "quiet", "kept open", "decorated",
                                      "decorated async"]
    assert lean[2].status.description == "ValueError: boom"


def test_sampling_and_the_current_span_follow_the_sampler() -> None:
    provider, exporter = _provider(LeanTracerProvider, sampler=ALWAYS_OFF)
    with provider.get_tracer("t").start_as_current_span("dropped") as span:
        assert isinstance(span, NonRecordingSpan)
        assert not span.get_span_context().trace_flags.sampled
    assert exporter.get_finished_spans() == ()

    provider, exporter = _provider(LeanTracerProvider, sampler=TraceIdRatioBased(1.0))
    with provider.get_tracer("t").start_as_current_span("kept") as span:
        assert isinstance(span, LeanSpan)
    assert [s.name for s in exporter.get_finished_spans()] == ["kept"]


def test_a_disabled_provider_still_makes_no_op_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = LeanTracerProvider()
    span = provider.get_tracer("t").start_span("x")
    assert not span.is_recording()


def test_an_ended_span_is_read_only_and_ending_twice_warns(caplog: pytest.LogCaptureFixture) -> None:
    provider, exporter = _provider(LeanTracerProvider)
    span = provider.get_tracer("t").start_span("x", attributes={"a": 1})
    span.end()
    with caplog.at_level(logging.WARNING):
        span.end()
        span.set_attribute("b", 2)
    assert "ended span" in caplog.text
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes or {}) == {"a": 1}
    with pytest.raises(TypeError):
        exported.attributes["c"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        span._attributes["c"] = 3  # type: ignore[attr-defined]


def test_an_unstarted_span_cannot_end() -> None:
    provider, _ = _provider(LeanTracerProvider)
    span = provider.get_tracer("t").start_span("x")
    span._start_time = None  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        span.end()


def test_lean_attributes_clean_what_is_not_simple() -> None:
    attributes = LeanAttributes(None, {"list": [1, 2], "s": "x", "custom": Status(StatusCode.OK)}, None)
    assert attributes["list"] == (1, 2)
    assert attributes["custom"] is None  # the SDK's rule for values it cannot make a string of
    attributes["s"] = "y"
    assert list(attributes) == ["list", "custom", "s"]


def test_spans_without_events_share_no_list_and_get_their_own_on_the_first() -> None:
    provider, exporter = _provider(LeanTracerProvider)
    tracer = provider.get_tracer("t")
    plain, with_event = tracer.start_span("plain"), tracer.start_span("event")
    with_event.add_event("e1")
    with_event.add_link(SpanContext(0x1, 0x2, is_remote=True))
    plain.end()
    with_event.end()
    plain.add_event("after end")  # ignored (and warned about), as by the SDK
    exported = {s.name: s for s in exporter.get_finished_spans()}
    assert exported["plain"].events == () and exported["plain"].links == ()
    assert [e.name for e in exported["event"].events] == ["e1"] and len(exported["event"].links) == 1


@pytest.mark.parametrize(("setting", "expected"), [(None, LeanTracerProvider), ("false", TracerProvider)])
def test_setup_builds_the_lean_provider_unless_told_not_to(setting: str | None, expected: type,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace
    from telemetry_support import uninstrument_all

    from otel_mcp.telemetry.setup import TelemetryOptions, setup_telemetry

    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)  # none set up yet (as in serve)

    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    if setting is not None:
        env["OTEL_MCP_LEAN_SPANS"] = setting
    telemetry = setup_telemetry(None, env=env, options=TelemetryOptions(), set_global=False)
    try:
        assert type(telemetry.tracer_provider) is expected
    finally:
        telemetry.shutdown()
        uninstrument_all()


class _Recording(SpanProcessor):
    """Records the calls it gets."""

    def __init__(self, calls: list[str], tag: str) -> None:
        self.calls = calls
        self.tag = tag

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.calls.append(f"{self.tag} start {span.name}")

    def _on_ending(self, span: Any) -> None:
        self.calls.append(f"{self.tag} ending {span.name}")

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(f"{self.tag} end {span.name}")


def test_one_processor_or_several_get_the_same_calls_in_the_same_order() -> None:
    """A lean span calls a lone processor directly (no multi-processor loop) and several through the loop."""
    for processors in (["a"], ["a", "b"]):
        calls: dict[type, list[str]] = {}
        for cls in (TracerProvider, LeanTracerProvider):
            seen = calls[cls] = []
            provider = cls(resource=Resource({}))
            for tag in processors:
                provider.add_span_processor(_Recording(seen, tag))
            tracer = provider.get_tracer("t")
            with tracer.start_as_current_span("outer"):
                tracer.start_span("inner").end()
        assert calls[TracerProvider] == calls[LeanTracerProvider]
        assert len(calls[LeanTracerProvider]) == 6 * len(processors)


class _EndsOnly(SpanProcessor):
    """Keeps ``SpanProcessor``'s no-op ``on_start`` and ``_on_ending`` (as the batch processor does)."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(f"end {span.name}")


def test_processors_added_after_the_first_span_get_the_later_spans() -> None:
    """A tracer works out where its spans go once, and again when the provider's processors change."""
    calls: dict[type, list[str]] = {}
    for cls in (TracerProvider, LeanTracerProvider):
        seen = calls[cls] = []
        provider = cls(resource=Resource({}))
        tracer = provider.get_tracer("t")
        tracer.start_span("before any").end()
        provider.add_span_processor(_EndsOnly(seen))
        tracer.start_span("one").end()
        provider.add_span_processor(_Recording(seen, "r"))
        tracer.start_span("two").end()
    assert calls[TracerProvider] == calls[LeanTracerProvider] == [
        "end one", "r start two", "r ending two", "end two", "r end two"]


def _parented(tracer: Any) -> None:
    """Root spans, local children and children of remote parents (sampled or not, with a trace state)."""
    state = TraceState([("vendor", "v1")])
    for flags in (TraceFlags(1), TraceFlags(0)):
        remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=flags, trace_state=state)
        context = trace_api.set_span_in_context(NonRecordingSpan(remote))
        tracer.start_span("remote child", context=context, attributes={"a": 1}, start_time=1).end(end_time=2)
    root = tracer.start_span("root", attributes={"k": "v"}, start_time=3)
    with trace_api.use_span(root, end_on_exit=False):
        tracer.start_span("local child", start_time=4).end(end_time=5)
    root.end(end_time=6)


@pytest.mark.parametrize("sampler", [None, ParentBased(ALWAYS_ON), ALWAYS_ON, ParentBased(TraceIdRatioBased(1.0)),
                                     ParentBased(ALWAYS_OFF), TraceIdRatioBased(0.0)])
def test_sampling_decisions_and_trace_states_are_the_sdks(sampler: Any) -> None:
    """A root span under the default sampler is sampled without asking it: the same outcome as asking."""
    kwargs = {} if sampler is None else {"sampler": sampler}
    sdk, lean = _both(_parented, **kwargs)
    assert [(s.name, s.context.trace_flags, s.context.trace_state, dict(s.attributes or {})) for s in lean] == \
        [(s.name, s.context.trace_flags, s.context.trace_state, dict(s.attributes or {})) for s in sdk]
    assert encode_spans(lean).SerializeToString() == encode_spans(sdk).SerializeToString()


def test_hooks_that_do_nothing_are_not_called() -> None:
    """``pass`` bodies (with or without a docstring) are skipped; anything else, or no bytecode, is called."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_mcp.telemetry.spans import _does_nothing

    def documented(span: Any) -> None:
        """Nothing to do."""

    def returns_one(span: Any) -> int:
        return 1

    assert _does_nothing(SpanProcessor.on_start) and _does_nothing(BatchSpanProcessor._on_ending)
    assert _does_nothing(documented) and _does_nothing(_EndsOnly([]).on_start)
    assert not _does_nothing(returns_one) and not _does_nothing(_Recording([], "r").on_start)
    assert not _does_nothing(len)
