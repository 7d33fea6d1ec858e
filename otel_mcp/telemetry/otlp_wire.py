"""OTLP protobuf for spans and log records, written straight to the wire.

Why: the OTLP exporters build a protobuf object for every span, attribute and
value and then serialize the tree: about 75 us a span on our machine, more than
the SDK takes to make the span. Our batches repeat one resource, a few scopes,
a few span names and attribute keys, so this writes the wire format directly
and memoizes the encoded resource, scope, name and key bytes. The output is
byte for byte what ``encode_spans(...).SerializeToString()`` and
``encode_logs(...)`` give (tested against them); values of rare types (maps,
bytes) are encoded by the SDK's own ``_encode_value``. The memos are plain
dicts shared by the export threads: a race costs at most a recomputation.

The C extension ``_wire`` (built at install where a C compiler is) writes the
same bytes for the common span and log record at about a quarter of the
instructions (54 k -> 13 k a server span); these functions use it when it is
there (``SPEEDUPS``) and encode in Python what it returns None for.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
    _encode_value,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind

try:
    from otel_mcp.telemetry import _wire
except ImportError:  # built without a C compiler: everything in Python
    _wire = None  # type: ignore[assignment]

SPEEDUPS = _wire is not None

_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_pack_d = struct.Struct("<d").pack
_SMALL = tuple(bytes((n,)) for n in range(128))
_MEMO_LIMIT = 4096  # entries per memo; past it the memo starts over (names and keys are few)

# Span and log flags: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


def varint(value: int) -> bytes:
    """A protobuf varint; negative int64 values as their 10-byte two's complement."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length(n: int) -> bytes:
    """A length-delimited field's length prefix."""
    return _SMALL[n] if n < 128 else varint(n)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _length(len(payload)) + payload


def _string_field(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode()) if text else b""


class _Memo(dict[Any, bytes]):
    """``key -> encoded bytes``, computed once; bounded so that odd inputs cannot grow it forever."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._encode = encode

    def __missing__(self, key: Any) -> bytes:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        value = self[key] = self._encode(key)
        return value


# -- attributes --------------------------------------------------------------------------

_KEY = _Memo(lambda key: _string_field(b"\x0a", key))  # KeyValue.key


def any_value(value: Any) -> bytes:
    """An AnyValue message (a oneof: its member is written even when it holds the default)."""
    cls = value.__class__
    if cls is str:
        return _field(b"\x0a", value.encode())
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:
        return b"\x18" + varint(value)
    if cls is float:
        return b"\x21" + _pack_d(value)
    if value is None:
        return b""
    if cls is tuple or cls is list:
        return _field(b"\x2a", b"".join([_field(b"\x0a", any_value(v)) for v in value]))
    return bytes(_encode_value(value).SerializeToString())


def _key_value(tag: bytes, key: str, value: Any) -> bytes:
    return _field(tag, _KEY[key] + _field(b"\x12", any_value(value)))


# Per tag: (key, value) -> the framed KeyValue field, for str values; (key, value, type) for bool and int
# values (True == 1: the type keeps them apart). Floats (durations) rarely repeat and are not kept.
_ATTRIBUTE_MEMOS: dict[bytes, tuple[_Memo, _Memo]] = {}


def attributes(tag: bytes, attrs: Mapping[str, Any] | None) -> list[bytes]:
    """Repeated KeyValue fields under ``tag``."""
    if not attrs:
        return []
    memos = _ATTRIBUTE_MEMOS.get(tag)
    if memos is None:
        memos = _ATTRIBUTE_MEMOS.setdefault(tag, (_Memo(lambda item: _key_value(tag, *item)),
                                                  _Memo(lambda item: _key_value(tag, item[0], item[1]))))
    strings, typed = memos
    items = getattr(attrs, "_dict", attrs).items()  # BoundedAttributes: its dict, not the Mapping ABC's iteration
    return [strings[k, v] if (cls := v.__class__) is str
            else typed[k, v, cls] if cls is int or cls is bool
            else _key_value(tag, k, v) for k, v in items]


# -- resources and scopes (few, so memoized whole) -----------------------------------------


class _PerObject:
    """``object -> encoded bytes`` by identity, holding the object so that its id is not reused."""

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        self._encode = encode
        self._known: dict[int, tuple[Any, bytes]] = {}

    def __call__(self, obj: Any) -> bytes:
        known = self._known.get(id(obj))
        if known is None or known[0] is not obj:
            if len(self._known) >= _MEMO_LIMIT:
                self._known.clear()
            known = self._known[id(obj)] = (obj, self._encode(obj))
        return known[1]


_resource_bytes = _PerObject(lambda resource: _field(b"\x0a", _encode_resource(resource).SerializeToString()))
_scope_bytes = _PerObject(lambda scope: _field(b"\x0a", _encode_instrumentation_scope(scope).SerializeToString()))


def _grouped(items: Iterable[Any], container_tag: bytes, field: Callable[[Any], bytes]) -> bytes:
    """``ExportXServiceRequest``: items (each framed by ``field``) grouped by resource, then scope, in
    first-seen order.

    Grouped by identity first (hashing a Resource serializes its attributes), then
    the few groups are merged by equality, as the SDK's encoder groups them (one group: no merge).
    """
    by_id: dict[tuple[int, int], tuple[Any, Any, list[bytes]]] = {}
    for item in items:
        resource = item.resource
        scope = item.instrumentation_scope or None
        group = by_id.get((id(resource), id(scope)))
        if group is None:
            group = by_id[id(resource), id(scope)] = (resource, scope, [])
        group[2].append(field(item))
    groups = list(by_id.values())
    if len(groups) == 1:  # the usual batch: one resource and scope, nothing to merge (and no Resource hash)
        resource, scope, encoded = groups[0]
        return _request(container_tag, [(resource, [(scope, encoded)])])
    merged: dict[Any, dict[Any, list[bytes]]] = {}
    for resource, scope, encoded in groups:
        merged.setdefault(resource, {}).setdefault(scope, []).extend(encoded)
    return _request(container_tag, [(resource, scopes.items()) for resource, scopes in merged.items()])


def _request(container_tag: bytes, nested: Iterable[tuple[Any, Iterable[tuple[Any, list[bytes]]]]]) -> bytes:
    """The request from its framed items by resource, then scope.

    Each level's length is summed from its parts, and the parts are joined once: framing each level as its
    own bytes copies the whole batch once per level (four times; ~1 k instructions a span)."""
    parts: list[bytes] = []
    for resource, scopes in nested:
        resource_parts = [_resource_bytes(resource)]
        for scope, encoded in scopes:
            schema = scope.schema_url if scope is not None else None
            scope_parts = [_scope_bytes(scope), *encoded]
            if schema:
                scope_parts.append(_string_field(b"\x1a", schema))
            resource_parts.append(b"\x12" + _length(sum(map(len, scope_parts))))
            resource_parts += scope_parts
        if resource.schema_url:
            resource_parts.append(_string_field(b"\x1a", resource.schema_url))
        parts.append(container_tag + _length(sum(map(len, resource_parts))))
        parts += resource_parts
    return b"".join(parts)


# -- spans ---------------------------------------------------------------------------------

_NAME = _Memo(lambda name: _string_field(b"\x2a", name))  # Span.name
# Span.kind: OTLP's value is SpanKind's + 1; looked up by member (an enum's .value is a descriptor call)
_KIND = {kind: b"\x30" + varint(kind.value + 1) for kind in SpanKind}


def _flags(context: Any) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if context is not None and context.is_remote else _HAS_IS_REMOTE


def _encode_status(key: tuple[Any, str | None]) -> bytes:
    code, message = key[0].value, key[1]
    return _field(b"\x7a", (_string_field(b"\x12", message) if message else b"")
                  + (b"\x18" + varint(code) if code else b""))


_STATUS = _Memo(_encode_status)  # (StatusCode, description) -> Span.status


def encode_span(span: Any) -> bytes:
    """One ``Span`` message."""
    if isinstance(span, ReadableSpan):
        # The SDK's fields, read directly: its properties are a Python call each, and ``events`` and ``links``
        # copy their list under a lock even when it is empty.
        attrs, events, links = span._attributes, span._events, span._links
        return _span(span._context, span._parent, span._name, span._kind, span._start_time, span._end_time,
                     attrs, getattr(attrs, "dropped", 0), events if events else (), getattr(events, "dropped", 0),
                     links if links else (), getattr(links, "dropped", 0), span._status)
    return _span(span.context, span.parent, span.name, span.kind, span.start_time, span.end_time, span.attributes,
                 span.dropped_attributes, span.events, span.dropped_events, span.links, span.dropped_links,
                 span.status)


def _span(context: Any, parent: Any, name: str, kind: Any, start: int | None, end: int | None,
          attrs: Mapping[str, Any] | None, dropped_attributes: int, events: Iterable[Any], dropped_events: int,
          links: Iterable[Any], dropped_links: int, status: Any) -> bytes:
    parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
    if context.trace_state:
        parts.append(_string_field(b"\x1a", ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (_NAME[name], _KIND[kind])
    if start:
        parts += (b"\x39", _pack_q(start))
    if end:
        parts += (b"\x41", _pack_q(end))
    parts += attributes(b"\x4a", attrs)
    if dropped_attributes:
        parts += (b"\x50", varint(dropped_attributes))
    for event in events:
        body = b"\x09" + _pack_q(event.timestamp) + _string_field(b"\x12", event.name)
        body += b"".join(attributes(b"\x1a", event.attributes))
        if event.dropped_attributes:
            body += b"\x20" + varint(event.dropped_attributes)
        parts.append(_field(b"\x5a", body))
    if dropped_events:
        parts += (b"\x60", varint(dropped_events))
    for link in links:
        body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big") + b"\x12\x08"
        body += link.context.span_id.to_bytes(8, "big") + b"".join(attributes(b"\x22", link.attributes))
        if link.dropped_attributes:
            body += b"\x28" + varint(link.dropped_attributes)
        parts.append(_field(b"\x6a", body + b"\x35" + _pack_i(_flags(link.context))))
    if dropped_links:
        parts += (b"\x70", varint(dropped_links))
    parts += (_STATUS[status.status_code, status.description], b"\x85\x01", _pack_i(_flags(parent)))
    return b"".join(parts)


def span_field(span: Any) -> bytes:
    """A span as a framed ``ScopeSpans.spans`` field: by ``_wire`` when it can, else by ``encode_span``."""
    if _wire is not None:
        encoded = _wire.span_field(span)
        if encoded is not None:
            return encoded
    return _field(b"\x12", encode_span(span))


def encode_spans(spans: Sequence[Any]) -> bytes:
    """A serialized ``ExportTraceServiceRequest``."""
    if _wire is not None:
        batch = _wire.span_fields(spans)  # the usual batch (one resource and scope, simple spans): all in C
        if batch is not None:
            resource, scope, fields = batch
            return _request(b"\x0a", [(resource, [(scope, [fields])])])
    return _grouped(spans, b"\x0a", span_field)


# -- log records -------------------------------------------------------------------------

_SEVERITY_TEXT = _Memo(lambda text: _string_field(b"\x1a", text))


def encode_log(readable: Any) -> bytes:
    """One ``LogRecord`` message."""
    record = readable.log_record
    flags = int(record.trace_flags) if record.trace_flags is not None else 0
    return log_record(record.timestamp, record.observed_timestamp, getattr(record.severity_number, "value", None),
                      record.severity_text, record.body, record.attributes, readable.dropped_attributes,
                      flags, record.trace_id, record.span_id, record.event_name)


def log_attributes(attrs: Mapping[str, Any]) -> bytes:
    """``LogRecord.attributes`` fields, encoded: ``log_record`` takes them (or their concatenation, in the
    order a dict of them would have) in place of a mapping."""
    return b"".join(attributes(b"\x32", attrs))


def log_double_head(key: str) -> bytes:
    """``log_attributes({key: x})`` up to ``x``'s 8 value bytes (``pack_double(x)``) for a float ``x``: its
    encoding without the general path (AnyValue.double_value is a fixed64, so only those bytes vary)."""
    key_field = _KEY[key]
    return b"\x32" + varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"


pack_double = _pack_d


def log_record(timestamp: int | None, observed: int | None, severity: int | None, severity_text: str | None,
               body: Any, attrs: Mapping[str, Any] | bytes | None, dropped: int, flags: int, trace_id: int | None,
               span_id: int | None, event_name: str | None) -> bytes:
    """A ``LogRecord`` message from its fields, in the order (and with the defaults left out) of the SDK's."""
    if _wire is not None:
        encoded = _wire.log_record(timestamp, observed, severity, severity_text, body, attrs, dropped, flags,
                                   trace_id, span_id, event_name)
        if encoded is not None:
            return encoded
    return _log_record(timestamp, observed, severity, severity_text, body, attrs, dropped, flags, trace_id, span_id,
                       event_name)


def _log_record(timestamp: int | None, observed: int | None, severity: int | None, severity_text: str | None,
                body: Any, attrs: Mapping[str, Any] | bytes | None, dropped: int, flags: int, trace_id: int | None,
                span_id: int | None, event_name: str | None) -> bytes:
    """``log_record`` in Python."""
    parts: list[bytes] = []
    if timestamp:
        parts += (b"\x09", _pack_q(timestamp))
    if severity:
        parts += (b"\x10", varint(severity))
    if severity_text:
        parts.append(_SEVERITY_TEXT[severity_text])
    parts.append(_field(b"\x2a", any_value(body)))
    if isinstance(attrs, bytes):
        parts.append(attrs)  # already encoded: ``log_attributes``
    else:
        parts += attributes(b"\x32", attrs)
    if dropped:
        parts += (b"\x38", varint(dropped))
    if flags:
        parts += (b"\x45", _pack_i(flags))
    if trace_id:
        parts += (b"\x4a\x10", trace_id.to_bytes(16, "big"))
    if span_id:
        parts += (b"\x52\x08", span_id.to_bytes(8, "big"))
    if observed:
        parts += (b"\x59", _pack_q(observed))
    if event_name:
        parts.append(_EVENT_NAME[event_name])
    return b"".join(parts)


_EVENT_NAME = _Memo(lambda name: _string_field(b"\x62", name))  # LogRecord.event_name


class EncodedLogRecord:
    """A log record already in its OTLP form (``field``: the framed ``ScopeLogs.log_records`` field), queued
    in a batch processor like the SDK's records and spliced into the export request as it is. Read-only by
    convention: a plain slotted class, made ~2x faster than a frozen dataclass, once per record."""

    __slots__ = ("field", "instrumentation_scope", "resource")

    def __init__(self, resource: Any, instrumentation_scope: Any, field: bytes) -> None:
        self.resource = resource
        self.instrumentation_scope = instrumentation_scope
        self.field = field


def log_record_field(timestamp: int | None, observed: int | None, severity: int | None, severity_text: str | None,
                     body: Any, attrs: Mapping[str, Any] | bytes | None, dropped: int, flags: int,
                     trace_id: int | None, span_id: int | None, event_name: str | None) -> bytes:
    """``log_record(...)`` framed as a ``ScopeLogs.log_records`` field, ready to splice into a request."""
    args = (timestamp, observed, severity, severity_text, body, attrs, dropped, flags, trace_id, span_id, event_name)
    field = _wire.log_record_field(*args) if _wire is not None else None
    return field if field is not None else _field(b"\x12", _log_record(*args))


class DirectLogger:
    """Log records of one scope, queued already encoded straight into a batch processor.

    Why: the SDK's ``Logger.emit`` builds a ``LogRecord`` (attributes checked one by one, a lock), a
    ``ReadableLogRecord`` copy and a context for every record, which the exporter then encodes; for a
    record whose fields are known (the per-request performance line, ``perflog``) that is most of its cost.
    Used only where the provider's one processor is a batch processor whose exporter encodes with
    this module (``setup.py`` decides), so the bytes on the wire are the SDK path's.
    """

    def __init__(self, queue: Callable[[EncodedLogRecord], None], resource: Any, scope: Any) -> None:
        self._queue = queue
        self._resource = resource
        self._scope = scope

    def emit_fields(self, fields: Iterable[bytes]) -> None:
        """Queue records framed by ``log_record_field`` (or ``_wire.request_record``), in order."""
        queue, resource, scope = self._queue, self._resource, self._scope
        for field in fields:
            queue(EncodedLogRecord(resource, scope, field))


def direct_queue(processor: Any) -> Callable[[EncodedLogRecord], None] | None:
    """The SDK batch processor's own queue (``BatchProcessor.emit``), or None if this SDK has none."""
    inner = getattr(processor, "_batch_processor", None)
    emit = getattr(inner, "emit", None)
    return emit if callable(emit) else None


def encode_logs(batch: Sequence[Any]) -> bytes:
    """A serialized ``ExportLogsServiceRequest``."""
    first = batch[0] if batch else None
    if first.__class__ is EncodedLogRecord:  # the usual batch: direct records of one resource and scope
        resource, scope = first.resource, first.instrumentation_scope
        fields = [record.field for record in batch if record.__class__ is EncodedLogRecord
                  and record.resource is resource and record.instrumentation_scope is scope]
        if len(fields) == len(batch):
            return _request(b"\x0a", [(resource, [(scope or None, fields)])])
    return _grouped(batch, b"\x0a", _log_field)


def _log_field(readable: Any) -> bytes:
    if readable.__class__ is EncodedLogRecord:
        return readable.field
    return _field(b"\x12", encode_log(readable))


# -- exporters ---------------------------------------------------------------------------


def _exporter(base: Any, service: str, response: Any, encode: Callable[[Sequence[Any]], bytes]) -> Any:
    """``base`` (a stock OTLP/gRPC exporter: endpoint, TLS, headers, retries) sending ``encode``'s bytes."""
    method = f"/opentelemetry.proto.collector.{service}/Export"

    class PreEncoded(base):  # type: ignore[misc]
        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()
            # request_serializer=None: gRPC sends the request bytes as they are
            self._client = _Stub(self._channel.unary_unary(method, request_serializer=None,
                                                           response_deserializer=response.FromString))

        def _translate_data(self, data: Sequence[Any]) -> bytes:
            return encode(data)

    PreEncoded.__name__ = PreEncoded.__qualname__ = f"PreEncoded{base.__name__}"
    return PreEncoded()


@dataclass(frozen=True)
class _Stub:
    Export: Callable[..., Any]


def span_exporter() -> SpanExporter:
    """The OTLP/gRPC span exporter, encoding with this module."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    exporter: SpanExporter = _exporter(OTLPSpanExporter, "trace.v1.TraceService", ExportTraceServiceResponse,
                                       encode_spans)
    return exporter


def log_exporter() -> Any:
    """The OTLP/gRPC log record exporter, encoding with this module."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    return _exporter(OTLPLogExporter, "logs.v1.LogsService", ExportLogsServiceResponse, encode_logs)
