"""The direct OTLP encoder writes exactly the bytes of the SDK's protobuf encoder."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel_mcp.telemetry import otlp_wire, perflog


@pytest.fixture(autouse=True, params=["c", "python"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs against both encoders: with the C extension ``_wire`` and without it."""
    if request.param == "python":
        monkeypatch.setattr(otlp_wire, "_wire", None)
        monkeypatch.setattr(perflog, "_wire", None)  # a request's line and record: perflog's call into C
    elif otlp_wire._wire is None:
        pytest.skip("the C extension is not built (no C compiler at install)")
    return str(request.param)


ALL_TYPES: dict[str, Any] = {
    "s": "text", "empty": "", "unicode": "rΓ¨gle ✓", "long": "x" * 300, "t": True, "f": False,
    "i": 42, "zero": 0, "neg": -7, "big": 2**62, "d": 0.25, "dneg": -1.5e300, "strs": ("a", "", "b"),
    "ints": [1, -2, 3], "bools": (True, False), "floats": (0.5,), "mixed_empty": (),
}


def _spans(resource: Resource, limits: SpanLimits | None = None) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plain = provider.get_tracer("otel_mcp.test")
    versioned = provider.get_tracer("otel_mcp.other", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("vendor", "v1"), ("other", "x")]))
    with plain.start_as_current_span("tools/call compose_rules", kind=SpanKind.SERVER, attributes=ALL_TYPES) as span:
        span.add_event("cache hit", {"tier": "l1", "n": 3})
        span.add_event("empty")
        with versioned.start_as_current_span("otel_mcp.compose.select", links=[Link(remote, {"why": "http"})]):
            pass
        child = plain.start_span("failed", kind=SpanKind.CLIENT)
        child.set_status(Status(StatusCode.ERROR, "tool_error: no such rule"))
        child.end()
    with plain.start_as_current_span("remote child", context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
                                     kind=SpanKind.CONSUMER) as span:
        span.set_status(Status(StatusCode.OK))
    plain.start_span("producer", kind=SpanKind.PRODUCER, links=[Link(remote)]).end()
    plain.start_span("").end()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=3, max_events=1, max_links=0,
                                                     max_event_attributes=1)])
def test_spans_match_the_sdk_encoder_byte_for_byte(limits: SpanLimits | None) -> None:
    resource = Resource.create({"service.name": "otel-mcp", "service.instance.id": "i-1"})
    spans = _spans(resource, limits)
    assert len(spans) == 6
    assert otlp_wire.encode_spans(spans) == sdk_encode_spans(spans).SerializeToString()


class _SpanView:
    """A span that is not the SDK's ``ReadableSpan``: only its public properties, as another SDK might offer."""

    _PROPERTIES = ("context", "parent", "name", "kind", "start_time", "end_time", "attributes", "events", "links",
                   "status", "dropped_attributes", "dropped_events", "dropped_links", "resource",
                   "instrumentation_scope")

    def __init__(self, span: Any) -> None:
        for name in self._PROPERTIES:
            setattr(self, name, getattr(span, name))


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=3, max_events=1, max_links=1)])
def test_spans_read_through_their_properties_match_too(limits: SpanLimits | None) -> None:
    """The encoder reads the SDK's span fields directly; any other span object through its properties."""
    spans = _spans(Resource.create({"service.name": "otel-mcp"}), limits)
    views = [_SpanView(span) for span in spans]
    assert otlp_wire.encode_spans(views) == sdk_encode_spans(spans).SerializeToString()


def test_spans_of_two_resources_group_like_the_sdk() -> None:
    spans = _spans(Resource.create({"service.name": "a"})) + _spans(Resource({}, schema_url="https://x/1"))
    ours = ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(spans))
    assert ours == sdk_encode_spans(spans)
    assert [len(rs.scope_spans) for rs in ours.resource_spans] == [2, 2]


def test_rare_attribute_types_fall_back_to_the_sdk() -> None:
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_value

    for value in (b"\x00\x01", {"k": "v", "n": [1, 2]}, None, (1, "two", 3.0)):
        assert otlp_wire.any_value(value) == _encode_value(value).SerializeToString()


def test_varint_matches_protobuf() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    for n in (0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)):
        assert b"\x18" + otlp_wire.varint(n) == AnyValue(int_value=n).SerializeToString()


def test_logs_match_the_sdk_encoder_byte_for_byte() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "otel-mcp"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("otel_mcp.test_otlp_wire")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)
    try:
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("request"):
            logger.warning("slow request: %s took %d ms", "tools/call", 512, extra={"otel_mcp.duration_ms": 512.5})
        logger.info("no trace context", extra={"otel_mcp.flags": ("a", "b")})
        otel_logger = provider.get_logger("otel_mcp.perf", "1.0")
        otel_logger.emit(LogRecord(body={"method": "tools/call", "ok": True}, severity_number=SeverityNumber.INFO,
                                   attributes={"event": "request"}))
        otel_logger.emit(LogRecord(body=None, event_name="otel_mcp.alert"))
        otel_logger.emit(timestamp=1_700_000_000_123_456_789, severity_number=SeverityNumber.INFO, severity_text="INFO",
                         body="tools/call compose_rules ok in 1.5 ms", event_name="otel_mcp.request",
                         attributes={"event": "request", "duration_ms": 1.5, "outcome": "ok", "transport": "pipe"})
    finally:
        logger.removeHandler(handler)
    batch = list(exporter.get_finished_logs())
    assert len(batch) == 5
    assert otlp_wire.encode_logs(batch) == sdk_encode_logs(batch).SerializeToString()


def test_equal_scopes_of_two_tracers_share_one_scope_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in ("a", "b", "c"):
        provider.get_tracer("otel_mcp.same").start_span(name).end()  # a new scope object per tracer
    spans = list(exporter.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(otlp_wire.encode_spans(spans))
    assert ours == sdk_encode_spans(spans)
    assert [s.name for s in ours.resource_spans[0].scope_spans[0].spans] == ["a", "b", "c"]


@contextlib.contextmanager
def _grpc_collector() -> Iterator[tuple[int, list[Any]]]:
    """A gRPC OTLP receiver for traces and logs: its port, and the requests it parsed."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, received
    finally:
        server.stop(None)


def test_the_exporters_deliver_to_a_grpc_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stock gRPC exporters with pre-encoded requests: a gRPC server parses exactly the SDK's message."""
    from opentelemetry.sdk._logs.export import LogRecordExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult

    with _grpc_collector() as (port, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        spans = _spans(Resource.create({"service.name": "otel-mcp"}))
        span_exporter = otlp_wire.span_exporter()
        assert span_exporter.export(spans) == SpanExportResult.SUCCESS
        assert received[-1] == sdk_encode_spans(spans)
        span_exporter.shutdown()

        logs = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=Resource.create({}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        provider.get_logger("otel_mcp.perf").emit(body="tools/call ok in 1 ms", severity_number=SeverityNumber.INFO)
        batch = list(logs.get_finished_logs())
        log_exporter = otlp_wire.log_exporter()
        assert log_exporter.export(batch) == LogRecordExportResult.SUCCESS
        assert received[-1] == sdk_encode_logs(batch)
        log_exporter.shutdown()
    assert len(received) == 2


REQUESTS = [  # perf-log request items: ok with a sampled span, an error without one, a resource read
    ("request", 1_700_000_000.25, "tools/call", "compose_rules", 0.0015, None, "tcp", 0xABC, 0xDEF, 1),
    ("request", 1_700_000_001.5, "tools/call", "get_rule", 0.25, "tool_error", "pipe", 0, 0, 0),
    ("request", 1_700_000_002.0, "resources/read", None, 0.001, None, "tcp", 0x123, 0x456, 0),
]


def test_perf_log_records_skip_the_sdk_logger_and_send_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """``setup_telemetry`` queues the per-request records already encoded (``DirectLogger``) where its one
    gRPC logs exporter encodes with ``otlp_wire``; a collector receives what the SDK's ``Logger.emit`` path
    sends (an attribute length limit, which the direct path does not apply, switches it off)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from telemetry_support import uninstrument_all

    from otel_mcp.telemetry.setup import TelemetryOptions, setup_telemetry

    sent: dict[str, list[Any]] = {}
    with _grpc_collector() as (port, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        for path in ("direct", "sdk"):
            if path == "sdk":
                monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100000")
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_TRACES_EXPORTER": "none",
                   "OTEL_METRICS_EXPORTER": "none"}
            telemetry = setup_telemetry(None, env=env, options=TelemetryOptions(), set_global=False)
            try:
                assert telemetry.perf is not None
                assert isinstance(telemetry.perf.otel_logger, otlp_wire.DirectLogger) == (path == "direct")
                for item in REQUESTS:
                    telemetry.perf._put(item)
                assert telemetry.perf.flush()
            finally:
                telemetry.shutdown()
                uninstrument_all()
            sent[path] = [request for request in received if isinstance(request, ExportLogsServiceRequest)]
            received.clear()
    for requests in sent.values():
        for request in requests:
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    assert scope_logs.scope.name == "otel_mcp.perf"
                    for record in scope_logs.log_records:
                        assert record.observed_time_unix_nano > 0
                        record.observed_time_unix_nano = 0  # when it was emitted: the one field that differs
    scopes = {path: [sl for q in requests for rl in q.resource_logs for sl in rl.scope_logs]  # each setup has its
              for path, requests in sent.items()}  # own service.instance.id: the scopes and records must match
    assert scopes["direct"] == scopes["sdk"]
    records = [r for sl in scopes["direct"] for r in sl.log_records]
    assert [r.body.string_value for r in records] == [
        "tools/call compose_rules ok in 1.5 ms", "tools/call get_rule error in 250.0 ms", "resources/read ok in 1.0 ms"]
    assert records[0].trace_id == (0xABC).to_bytes(16, "big") and records[0].flags == 1


def test_true_and_one_under_one_key_stay_apart() -> None:
    """Memoized attribute bytes are keyed by type as well: ``True == 1`` in Python, not on the wire."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for value in (True, 1, 1.0, "1", False, 0):
        provider.get_tracer("t").start_span("s", attributes={"flag": value}).end()
    spans = list(exporter.get_finished_spans())
    assert otlp_wire.encode_spans(spans) == sdk_encode_spans(spans).SerializeToString()


@pytest.mark.parametrize("key", ["duration_ms", "k", "a-key-long-enough-to-need-a-two-byte-length-" * 3])
@pytest.mark.parametrize("value", [0.0, 12.346, -1.5, 1e300, float("inf")])
def test_double_attribute_shortcut_is_the_general_encoding(key: str, value: float) -> None:
    assert otlp_wire.log_double_head(key) + otlp_wire.pack_double(value) == otlp_wire.log_attributes({key: value})

