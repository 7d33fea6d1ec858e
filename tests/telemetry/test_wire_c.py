"""otlp_wire's C half (``_wire.c``) against its Python encoder, on generated input."""

from __future__ import annotations

import shutil
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_mcp.telemetry import otlp_wire

_wire: Any = otlp_wire._wire
needs_c = pytest.mark.skipif(_wire is None, reason="the C extension is not built (no C compiler at install)")


def test_the_c_extension_is_built_where_a_compiler_is() -> None:
    """``optional=True`` would let a failed build pass unnoticed: where a compiler is, it must be there."""
    assert otlp_wire.SPEEDUPS or (shutil.which("cc") is None and shutil.which("gcc") is None)


_VALUES = st.one_of(
    st.text(max_size=300), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True), st.lists(st.integers(), max_size=3), st.none(), st.binary(max_size=4),
)


@needs_c
@settings(max_examples=150, deadline=None)
@given(attributes=st.dictionaries(st.text(max_size=20), _VALUES, max_size=40),
       name=st.text(max_size=40), kind=st.sampled_from(list(SpanKind)),
       status=st.sampled_from([Status(StatusCode.UNSET), Status(StatusCode.OK), Status(StatusCode.ERROR),
                               Status(StatusCode.ERROR, "tool_error: ✗")]),
       parent=st.one_of(st.none(), st.booleans()))
def test_c_spans_are_the_python_encoders_bytes(attributes: dict[str, Any], name: str, kind: SpanKind,
                                               status: Status, parent: bool | None) -> None:
    """Where ``_wire`` encodes a span (simple values only) it writes the Python encoder's bytes; it leaves the
    rest (lists, None, bytes, ints past int64) to Python rather than get them wrong."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = None
    if parent is not None:
        parent_context = SpanContext(2**127 + 5, 2**63 + 7, is_remote=parent, trace_flags=TraceFlags(1))
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent_context))
    span = provider.get_tracer("t").start_span(name, context=context, kind=kind, attributes=attributes)
    span.set_status(status)
    span.end()
    (finished,) = exporter.get_finished_spans()
    simple = all(type(v) in (str, bool, float) or (type(v) is int and -(2**63) <= v < 2**63)
                 for v in finished.attributes.values())
    encoded = _wire.span_field(finished)
    assert (encoded is not None) == simple
    if encoded is not None:
        assert encoded == otlp_wire._field(b"\x12", otlp_wire.encode_span(finished))


_IDS = st.one_of(st.none(), st.just(0), st.integers(min_value=1, max_value=2**64 - 1))


@needs_c
@settings(max_examples=150, deadline=None)
@given(timestamp=st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1)),
       severity=st.one_of(st.none(), st.integers(min_value=0, max_value=24)),
       severity_text=st.one_of(st.none(), st.text(max_size=8)),
       body=st.one_of(st.text(max_size=200), st.none(), st.integers()),
       attrs=st.one_of(st.none(), st.binary(max_size=30), st.dictionaries(st.text(max_size=8), _VALUES, max_size=8)),
       dropped=st.integers(min_value=0, max_value=300), flags=st.integers(min_value=0, max_value=2**32 - 1),
       trace_id=st.one_of(_IDS, st.integers(min_value=2**64, max_value=2**128 - 1)), span_id=_IDS,
       event_name=st.one_of(st.none(), st.text(max_size=20)))
def test_c_log_records_are_the_python_encoders_bytes(timestamp: int | None, severity: int | None,
                                                     severity_text: str | None, body: Any, attrs: Any, dropped: int,
                                                     flags: int, trace_id: int | None, span_id: int | None,
                                                     event_name: str | None) -> None:
    args = (timestamp, timestamp, severity, severity_text, body, attrs, dropped, flags, trace_id, span_id, event_name)
    encoded = _wire.log_record(*args)
    if type(body) is str and (attrs is None or type(attrs) is bytes):
        assert encoded is not None  # the per-request record's form: always the C path
    if encoded is not None:
        assert encoded == otlp_wire._log_record(*args)
        assert _wire.log_record_field(*args) == otlp_wire._field(b"\x12", encoded)


@needs_c
def test_c_encoder_grows_past_its_stack_buffer_and_refuses_bad_ids() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}), span_limits=SpanLimits(max_span_attributes=1000))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    big = {f"key.{n}": "v" * (n * 7) for n in range(600)}  # ~1.2 MB: the 1 KB stack buffer grows many times
    provider.get_tracer("t").start_span("big", attributes=big).end()
    (span,) = exporter.get_finished_spans()
    assert _wire.span_field(span) == otlp_wire._field(b"\x12", otlp_wire.encode_span(span))
    for bad in (-1, 2**128):
        with pytest.raises(OverflowError):
            _wire.log_record(None, None, None, None, "x", None, 0, 0, bad, None, None)
        with pytest.raises(OverflowError):
            otlp_wire._log_record(None, None, None, None, "x", None, 0, 0, bad, None, None)


@needs_c
@settings(max_examples=600, deadline=None)
@given(ts=st.floats(min_value=0, max_value=4e9),
       seconds=st.one_of(st.floats(min_value=0, max_value=1e6), st.floats(min_value=1e8, max_value=1e15),
                         st.integers(min_value=0, max_value=10**7).map(lambda n: n / 1e6)),  # 3-decimal ms
       target=st.one_of(st.none(), st.text(max_size=30)), error_type=st.one_of(st.none(), st.text(max_size=10)),
       trace_id=st.one_of(st.just(0), st.integers(min_value=1, max_value=2**128 - 1)),
       span_id=st.one_of(st.just(0), st.integers(min_value=1, max_value=2**64 - 1)), flags=st.sampled_from([0, 1]),
       with_record=st.booleans())
def test_c_request_lines_and_records_are_pythons(ts: float, seconds: float, target: str | None,
                                                 error_type: str | None, trace_id: int, span_id: int, flags: int,
                                                 with_record: bool) -> None:
    """``_wire.request_record``: the line's text and the record's bytes (its body's ``repr`` of the rounded
    duration, the duration attribute's 8 bytes) are perflog's Python ones."""
    from otel_mcp.telemetry import perflog

    item = ("request", ts, "tools/call", target, seconds, error_type, "tcp", trace_id, span_id, flags)
    shape = perflog._request_shape(item)
    with mock.patch.object(perflog.time, "time_ns", return_value=1_700_000_000_123_456_789):
        in_c = perflog._request_record(item, shape, with_record)
        perflog._wire = None
        try:
            assert in_c == perflog._request_record(item, shape, with_record)
        finally:
            perflog._wire = _wire
    assert (in_c[1] is None) == (not with_record)


@needs_c
def test_c_batches_of_one_resource_and_scope_are_the_span_fields_joined() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("a")
    for n in range(3):
        tracer.start_span(f"s{n}", attributes={"n": n}).end()
    spans = list(exporter.get_finished_spans())
    resource, scope, fields = _wire.span_fields(spans)
    assert resource is spans[0].resource and scope is spans[0].instrumentation_scope
    assert fields == b"".join(_wire.span_field(span) for span in spans)
    provider.get_tracer("b").start_span("other scope").end()
    tracer.start_span("with a list", attributes={"l": [1]}).end()  # same scope, a value C leaves to Python
    mixed, not_simple = exporter.get_finished_spans()[3:]
    assert _wire.span_fields([*spans, mixed]) is None  # another scope object: Python groups and merges
    assert _wire.span_fields([*spans[:1], not_simple]) is None
    assert _wire.span_fields([]) is None
