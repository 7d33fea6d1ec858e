"""MCP server instrumentation: semconv MCP metrics and a richer server span.

The mcp SDK already opens one SERVER span per inbound message (its
``OpenTelemetryMiddleware``, tracer ``mcp-python-sdk``), parented on the
client's ``params._meta`` trace context. This instrumentor adds no span; it
appends a ``ServerMiddleware`` to every ``mcp.server.lowlevel.Server`` built
while instrumented, which

- records ``mcp.server.operation.duration`` and ``mcp.server.session.duration``
  (semconv buckets; ``setup`` adds a finer View), requests in flight, active
  sessions and tool errors, through ``BoundHistogram`` s cached per request
  shape (no attribute dict is built or hashed per call);
- adds to the SDK span what it lacks: ``mcp.session.id``, ``network.transport``
  (``pipe`` for stdio, ``tcp`` + ``network.protocol.name=http`` for HTTP),
  ``client.address``/``client.port``;

and, only when a tracer provider records spans, wraps the SDK's span factory
so that the span follows the server-side error rules (the protocol-level
JSON-RPC codes in ``PROTOCOL_ERROR_CODES`` blame the client:
``rpc.response.status_code`` is kept, ``error.type`` and the ERROR status are
not set) and links to the ambient (HTTP) context when ``_meta`` chose another
parent.

Payload sizes (``otel_mcp.mcp.request.size`` / ``otel_mcp.mcp.response.size``,
by ``network.transport``) are taken where the bytes are: on HTTP an ASGI
middleware added to every streamable-HTTP app (POST body in, response body
out), on stdio the line-oriented wire of ``otel_mcp.server.limits`` (each
JSON-RPC message read and written).

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry.mcp import McpInstrumentor

    McpInstrumentor().instrument(meter_provider=meter_provider)
    server = MCPServer("demo")        # instrumented from birth
    McpInstrumentor.instrument_server(existing_server)  # or afterwards

Never by default: a tool's arguments, a rule body, a token. Argument capture
is an opt-in (the semantic conventions' opt-in attribute
``gen_ai.tool.call.arguments`` on the ``tools/call`` span, JSON, cut at
``MAX_CAPTURED_ARGUMENTS`` characters): ``OTEL_MCP_CAPTURE_TOOL_ARGUMENTS=true``
or ``instrument(capture_arguments=True)``. Arguments can hold secrets and rule
bodies: turn it on only where the trace backend may see them.

Configuration
-------------
``OTEL_MCP_CAPTURE_TOOL_ARGUMENTS`` (default false). Providers come from ``opentelemetry-instrument`` or
``otel_mcp.telemetry.setup`` (standard ``OTEL_*`` variables).
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from time import perf_counter
from typing import Any, Final

import wrapt
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import server as lowlevel_server
from mcp.shared.exceptions import MCPError
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import CallbackOptions, Histogram, Observation, get_meter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROMPT_NAME,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_NAME,
)
from opentelemetry.semconv._incubating.attributes.mcp_attributes import (
    MCP_METHOD_NAME,
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_RESPONSE_STATUS_CODE
from opentelemetry.semconv._incubating.metrics.mcp_metrics import (
    MCP_SERVER_OPERATION_DURATION,
    MCP_SERVER_SESSION_DURATION,
)
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PROTOCOL_NAME,
    NETWORK_PROTOCOL_VERSION,
    NETWORK_TRANSPORT,
)
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue
from pydantic import ValidationError

from otel_mcp import mcp_internals
from otel_mcp.telemetry import names
from otel_mcp.telemetry.bound import BoundHistogram, bind
from otel_mcp.telemetry.package import _mcp_instruments
from otel_mcp.telemetry.state import current_span, instrumentation_enabled, records_spans
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)

SCHEMA_URL: Final = Schemas.V1_37_0.value
MAX_ATTRIBUTE_SETS = 2048  # distinct metric attribute sets kept precomputed; beyond, targets become _OTHER
MAX_TARGETS = 256  # distinct tool/prompt names per method before they are reported as _OTHER
MAX_CAPTURED_ARGUMENTS = 4096  # characters of gen_ai.tool.call.arguments, when captured
CAPTURE_ARGUMENTS_ENV: Final = "OTEL_MCP_CAPTURE_TOOL_ARGUMENTS"
_INVALID_PARAMS = "-32602"
_STDIO: Final = "pipe"
_TCP: Final = "tcp"
_TRANSPORT_STATE: Final = "otel_mcp.transport"  # the connection's _Transport, in Connection.state

RequestObserver = Callable[[str, str | None, float, str | None, str], None]
"""``(method, target, seconds, error_type, transport)``, called on the event loop after each request."""


class _Transport:
    """Per-connection facts, computed once and kept in ``Connection.state``."""

    __slots__ = ("key", "metric_attrs", "span_attrs")

    def __init__(self, key: str, span_attrs: dict[str, AttributeValue], metric_attrs: dict[str, AttributeValue]):
        self.key = key
        self.span_attrs = span_attrs
        self.metric_attrs = metric_attrs


_ShapeKey = tuple[str, str | None, str | None, str | None, str, str]


class McpTelemetry:
    """Instruments and live counters shared by every instrumented server."""

    def __init__(self, meter_provider: Any = None) -> None:
        meter = get_meter(__name__, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.operation_duration: Histogram = meter.create_histogram(
            MCP_SERVER_OPERATION_DURATION, unit="s", description="Duration of MCP requests handled by the server",
            explicit_bucket_boundaries_advisory=list(names.SEMCONV_DURATION_BUCKETS),
        )
        self.session_duration: Histogram = meter.create_histogram(
            MCP_SERVER_SESSION_DURATION, unit="s", description="Duration of MCP sessions",
            explicit_bucket_boundaries_advisory=list(names.SEMCONV_DURATION_BUCKETS),
        )
        self.request_size: Histogram = meter.create_histogram(
            names.REQUEST_SIZE, unit="By", description="JSON-RPC request size on the wire",
            explicit_bucket_boundaries_advisory=list(names.SIZE_BUCKETS),
        )
        self.response_size: Histogram = meter.create_histogram(
            names.RESPONSE_SIZE, unit="By", description="JSON-RPC response size on the wire",
            explicit_bucket_boundaries_advisory=list(names.SIZE_BUCKETS),
        )
        self.tool_errors = meter.create_counter(names.TOOL_ERRORS, unit="{error}", description="Failed tool calls")
        transport_sets: dict[str, dict[str, AttributeValue]] = {
            _STDIO: {NETWORK_TRANSPORT: _STDIO}, _TCP: {NETWORK_TRANSPORT: _TCP, NETWORK_PROTOCOL_NAME: "http"}
        }
        self.request_sizes = {t: bind(self.request_size, a) for t, a in transport_sets.items()}
        self.response_sizes = {t: bind(self.response_size, a) for t, a in transport_sets.items()}
        meter.create_observable_up_down_counter(
            names.ACTIVE_SESSIONS, [self._observe_sessions], unit="{session}", description="Open MCP sessions"
        )
        meter.create_observable_up_down_counter(
            names.REQUESTS_IN_FLIGHT, [self._observe_in_flight], unit="{request}",
            description="MCP requests being handled",
        )
        # Plain ints, read by the observable callbacks: no SDK call on the request path.
        self.in_flight: dict[str, int] = {_STDIO: 0, _TCP: 0}
        self.sessions: dict[str, int] = {_STDIO: 0, _TCP: 0}
        self._transport_attrs = {t: {NETWORK_TRANSPORT: t} for t in (_STDIO, _TCP)}
        self.durations: dict[_ShapeKey, BoundHistogram] = {}  # looked up by the middleware, per request
        self._targets: dict[str, set[str]] = {}
        self.observers: list[RequestObserver] = []

    def _observe_sessions(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, self._transport_attrs[t]) for t, n in self.sessions.items()]

    def _observe_in_flight(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, self._transport_attrs[t]) for t, n in self.in_flight.items()]

    def bind_operation_duration(
        self, method: str, target: str | None, error_type: str | None, status: str | None, transport: _Transport,
        protocol_version: str,
    ) -> BoundHistogram:
        """``mcp.server.operation.duration`` bound to a request shape not in ``durations`` yet (kept there)."""
        key = (method, target, error_type, status, transport.key, protocol_version)
        bound = bind(
            self.operation_duration, self.operation_attributes(method, target, error_type, status, transport,
                                                               protocol_version)
        )
        if len(self.durations) < MAX_ATTRIBUTE_SETS:
            self.durations[key] = bound
        return bound

    def operation_attributes(
        self, method: str, target: str | None, error_type: str | None, status: str | None, transport: _Transport,
        protocol_version: str,
    ) -> dict[str, AttributeValue]:
        """The metric attribute set for one request shape (targets beyond ``MAX_TARGETS`` become ``_OTHER``)."""
        if target is not None:
            seen = self._targets.setdefault(method, set())
            if target not in seen and (len(seen) >= MAX_TARGETS or len(self.durations) >= MAX_ATTRIBUTE_SETS):
                target = names.OTHER
            else:
                seen.add(target)
        attrs = {MCP_METHOD_NAME: method, MCP_PROTOCOL_VERSION: protocol_version, **transport.metric_attrs}
        if method == "tools/call":
            attrs[GEN_AI_OPERATION_NAME] = "execute_tool"
            if target is not None:
                attrs[GEN_AI_TOOL_NAME] = target
        elif method == "prompts/get" and target is not None:
            attrs[GEN_AI_PROMPT_NAME] = target
        if error_type is not None:
            attrs[ERROR_TYPE] = error_type
        if status is not None:
            attrs[RPC_RESPONSE_STATUS_CODE] = status
        return attrs


_TRANSPORTS: dict[tuple[str | None, str | None], _Transport] = {}  # (http version, session id) -> its _Transport
_MAX_TRANSPORTS = 1024


def _new_transport(ctx: ServerRequestContext[Any, Any], connection: Any, state: dict[str, Any] | None) -> _Transport:
    """The connection's transport attributes, kept in its ``state``.

    A connection of the stateless (2026-era envelope) path lives for one request: its attributes come from
    a bounded table keyed by what they are made of, not rebuilt per request.
    """
    request = ctx.request
    session_id = getattr(connection, "session_id", None)
    http_version = None
    if request is not None:
        http_version = str((getattr(request, "scope", None) or {}).get("http_version") or "") or None
    table_key = ("stdio" if request is None else http_version, str(session_id) if session_id else None)
    transport = _TRANSPORTS.get(table_key)
    if transport is None:
        span_attrs: dict[str, AttributeValue]
        if request is None:
            key = _STDIO
            span_attrs = {NETWORK_TRANSPORT: _STDIO}
            metric_attrs: dict[str, AttributeValue] = {NETWORK_TRANSPORT: _STDIO}
        else:
            key = _TCP
            span_attrs = {NETWORK_TRANSPORT: _TCP, NETWORK_PROTOCOL_NAME: "http"}
            if http_version:
                span_attrs[NETWORK_PROTOCOL_VERSION] = http_version
            metric_attrs = {NETWORK_TRANSPORT: _TCP, NETWORK_PROTOCOL_NAME: "http"}
        if session_id:
            span_attrs[MCP_SESSION_ID] = str(session_id)
        transport = _Transport(key, span_attrs, metric_attrs)
        if len(_TRANSPORTS) >= _MAX_TRANSPORTS:
            _TRANSPORTS.clear()
        _TRANSPORTS[table_key] = transport
    if state is not None:
        state[_TRANSPORT_STATE] = transport
    return transport


class TelemetryMiddleware:
    """The ``ServerMiddleware`` appended to instrumented servers (inside the SDK's span)."""

    def __init__(self, telemetry: McpTelemetry, capture_arguments: bool = False, spans: bool = True) -> None:
        self.telemetry = telemetry
        self.capture_arguments = capture_arguments
        self.spans = spans  # False: no tracer provider records, the SDK's span is a no-op: nothing to add to it

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None or not instrumentation_enabled():
            return await call_next(ctx)  # notifications are not operations
        tel = self.telemetry
        start = perf_counter()
        method = ctx.method
        connection = mcp_internals.connection(ctx.session)
        try:
            state = getattr(connection, "state", None)
            transport = state.get(_TRANSPORT_STATE) if state is not None else None
            if transport is None:
                transport = _new_transport(ctx, connection, state)
            if self.spans:
                self._describe_span(ctx, method, transport)
        except Exception:  # telemetry never breaks the call
            logger.debug("MCP telemetry failed before the call", exc_info=True)
            return await call_next(ctx)
        in_flight = tel.in_flight
        key = transport.key
        in_flight[key] += 1
        error_type: str | None = None
        status: str | None = None
        protocol_version = ctx.protocol_version
        try:
            result = await call_next(ctx)
            if (
                method == "tools/call"
                and (type(result) is dict or isinstance(result, Mapping))  # a dict: no ABC check
                and result.get("isError") is True
            ):
                error_type = names.TOOL_ERROR
            elif method == "initialize":
                # The connection commits the negotiated version only after this returns: read it from the result.
                if isinstance(result, Mapping):
                    protocol_version = str(result.get("protocolVersion") or protocol_version)
                self._session_started(connection, transport, protocol_version)
            return result
        except MCPError as exc:
            code = exc.error.code
            status = str(code)
            if code not in names.PROTOCOL_ERROR_CODES:
                error_type = status
            raise
        except ValidationError:
            status = _INVALID_PARAMS
            raise
        except BaseException as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            duration = perf_counter() - start
            in_flight[key] -= 1
            try:
                self._record(ctx, method, duration, error_type, status, transport, protocol_version)
            except Exception:
                logger.debug("MCP telemetry failed after the call", exc_info=True)

    def _describe_span(self, ctx: ServerRequestContext[Any, Any], method: str, transport: _Transport) -> None:
        """What the SDK's span lacks: transport, session, client address; the arguments when asked."""
        span = current_span()
        if not span.is_recording():
            return
        request = ctx.request
        if request is None:
            span.set_attributes(transport.span_attrs)
        else:
            scope = getattr(request, "scope", None)  # ASGI: the (host, port) pair Request.client wraps per call
            client = scope.get("client") if type(scope) is dict else getattr(request, "client", None)
            if client is not None:
                span.set_attributes({**transport.span_attrs, CLIENT_ADDRESS: client[0], CLIENT_PORT: client[1]})
            else:
                span.set_attributes(transport.span_attrs)
            meta = ctx.meta
            if meta and "traceparent" in meta:  # _meta chose the parent: link the HTTP-level context
                _link_http_context(span, request)
        if self.capture_arguments and method == "tools/call" and ctx.params:
            span.set_attribute(GEN_AI_TOOL_CALL_ARGUMENTS, _arguments_json(ctx.params.get("arguments")))

    def _record(
        self, ctx: ServerRequestContext[Any, Any], method: str, duration: float, error_type: str | None,
        status: str | None, transport: _Transport, protocol_version: str,
    ) -> None:
        tel = self.telemetry
        target: str | None = None
        if method == "tools/call" or method == "prompts/get":  # noqa: PLR1714  (two compares, no set)
            params = ctx.params
            name = params.get("name") if params else None
            target = name if type(name) is str else None
        bound = tel.durations.get((method, target, error_type, status, transport.key, protocol_version))
        if bound is None:
            bound = tel.bind_operation_duration(method, target, error_type, status, transport, protocol_version)
        bound.record(duration)
        if error_type is not None and method == "tools/call":
            tool = bound.attributes.get(GEN_AI_TOOL_NAME, names.OTHER)
            tel.tool_errors.add(1, {GEN_AI_TOOL_NAME: tool, ERROR_TYPE: error_type})
        for observer in tel.observers:
            observer(method, target, duration, error_type, transport.key)

    def _session_started(self, connection: Any, transport: _Transport, protocol_version: str) -> None:
        exit_stack = getattr(connection, "exit_stack", None)
        if exit_stack is None:
            return
        tel = self.telemetry
        started = time.perf_counter()
        attrs: dict[str, AttributeValue] = {**transport.metric_attrs, MCP_PROTOCOL_VERSION: protocol_version}
        tel.sessions[transport.key] += 1

        def ended() -> None:
            tel.sessions[transport.key] -= 1
            tel.session_duration.record(time.perf_counter() - started, attrs)

        exit_stack.callback(ended)


# -- the SDK span: server-side error rules and the link to the HTTP context ------------


def _is_protocol_error(attributes: Mapping[str, AttributeValue]) -> bool:
    """Whether ``attributes`` carry an ``error.type`` that is a protocol-level JSON-RPC code (the client's)."""
    error_type = attributes.get(ERROR_TYPE)
    return isinstance(error_type, str) and error_type.lstrip("-").isdigit() and (
        int(error_type) in names.PROTOCOL_ERROR_CODES
    )


class _ServerSpan(wrapt.ObjectProxy[Any]):
    """The SDK's span, minus the client-blaming error it would record."""

    _self_protocol_error = False

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if _is_protocol_error(attributes):
            self._self_protocol_error = True
            attributes = {k: v for k, v in attributes.items() if k != ERROR_TYPE}
        self.__wrapped__.set_attributes(attributes)

    def set_status(self, status: Any, description: str | None = None) -> None:
        if self._self_protocol_error and status is StatusCode.ERROR:
            return
        self.__wrapped__.set_status(status, description)


def _server_span(span: Any, ambient: SpanContext | None) -> Any:
    """The SDK's server span, just started, with the server-side error rules (the ``_ServerSpan`` proxy),
    linked to the ambient HTTP-level context when ``_meta`` chose another parent."""
    if not span.is_recording():
        return span
    if ambient is not None and ambient.is_valid and ambient.trace_id != span.get_span_context().trace_id:
        span.add_link(ambient, {names.LINK: names.LINK_HTTP_SERVER})
    return _ServerSpan(span)


def _ambient(kwargs: Mapping[str, Any]) -> SpanContext | None:
    """The current (HTTP-level) span context when ``_meta`` gives the span a parent of its own."""
    return current_span().get_span_context() if kwargs.get("context") is not None else None


class _ServerSpanContext:
    """``otel_span(...)`` for the server span: the SDK's context manager, its span given the server rules."""

    __slots__ = ("_ambient", "_cm")

    def __init__(self, otel_span: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._ambient = _ambient(kwargs)
        self._cm = otel_span(*args, **kwargs)

    def __enter__(self) -> Any:
        return _server_span(self._cm.__enter__(), self._ambient)

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


def _server_otel_span(otel_span: Callable[..., Any]) -> Callable[..., Any]:
    """The MCP SDK's ``otel_span``, its SERVER span made through ``_ServerSpanContext``; other kinds are its own.
    A plain function with ``__wrapped__``: the SDK calls it by module attribute, once per request."""

    def server_otel_span(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("kind") is not SpanKind.SERVER:
            return otel_span(*args, **kwargs)
        return _ServerSpanContext(otel_span, args, kwargs)

    server_otel_span.__wrapped__ = otel_span  # type: ignore[attr-defined]
    return server_otel_span


def _arguments_json(arguments: Any) -> str:
    text = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False, default=str,
                      separators=(",", ":"))
    return text if len(text) <= MAX_CAPTURED_ARGUMENTS else text[:MAX_CAPTURED_ARGUMENTS] + "..."


def _link_http_context(span: Any, request: Any) -> None:
    """Link the span to a ``traceparent`` HTTP header that is not its parent (the client's HTTP context)."""
    header = request.headers.get("traceparent")
    if not header:
        return
    linked = trace.get_current_span(propagate.extract({"traceparent": header})).get_span_context()
    own = span.get_span_context()
    if linked.is_valid and linked.trace_id != own.trace_id:
        span.add_link(linked, {names.LINK: names.LINK_HTTP_REQUEST})


# -- payload sizes where the bytes are -----------------------------------------------------


class WireSizeMiddleware:
    """ASGI middleware: ``otel_mcp.mcp.request.size`` / ``.response.size`` of POSTs to ``path`` (HTTP).

    Not a coroutine of its own: it returns the app's awaitable, so that the request does not pay for one
    more frame resumed at each of its suspensions. The request size is the ``content-length`` header; the
    response size is recorded with the last body message (a response that never completes has none).
    """

    def __init__(self, app: Any, path: str = "/mcp") -> None:
        self.app = app
        self.path = path

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        tel = McpInstrumentor._telemetry
        if tel is None or scope.get("method") != "POST" or scope.get("path") != self.path or (
            not instrumentation_enabled()
        ):
            return self.app(scope, receive, send)  # type: ignore[no-any-return]
        for name, value in reversed(scope.get("headers", ())):  # clients put content-length near the end
            if name == b"content-length":
                if value.isdigit():
                    tel.request_sizes[_TCP].record(int(value))
                break
        response_sizes = tel.response_sizes[_TCP]
        sent = 0

        def counting_send(message: Any) -> Any:
            """Adds up response body bytes; returns ``send``'s awaitable (no coroutine of its own)."""
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body") and sent:
                    response_sizes.record(sent)
            return send(message)

        return self.app(scope, receive, counting_send)  # type: ignore[no-any-return]


def _wrap_http_app(wrapped: Any, _instance: Any, args: Any, kwargs: Any) -> Any:
    app = wrapped(*args, **kwargs)
    try:
        path = kwargs.get("streamable_http_path") or "/mcp"
        app.add_middleware(WireSizeMiddleware, path=path)
    except Exception:
        logger.debug("could not add the size middleware", exc_info=True)
    return app


def _sized_classify_line(classify: Callable[[str], Any]) -> Callable[[str], Any]:
    """``limits.classify_line`` recording the size of each line read (it sees each one, synchronously: no
    coroutine of our own around the wire's reads, which wait on the pipe). Plain functions here and in
    ``_sized_write``, not ``wrapt`` wrappers: they run on every line."""

    def classify_line(text: str) -> Any:
        tel = McpInstrumentor._telemetry
        if tel is not None and instrumentation_enabled():
            tel.request_sizes[_STDIO].record(_utf8_len(text))
        return classify(text)

    classify_line.__wrapped__ = classify  # type: ignore[attr-defined]
    return classify_line


def _sized_write(write: Callable[[Any, str], Awaitable[None]]) -> Callable[[Any, str], Awaitable[None]]:
    """``_Wire.write`` recording the line's size; it returns ``write``'s coroutine (no coroutine of its own)."""

    def sized_write(wire: Any, text: str) -> Awaitable[None]:
        tel = McpInstrumentor._telemetry
        if tel is not None and instrumentation_enabled():
            tel.response_sizes[_STDIO].record(_utf8_len(text))
        return write(wire, text)

    sized_write.__wrapped__ = write  # type: ignore[attr-defined]
    return sized_write


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _stdio_limits() -> Any:
    """``otel_mcp.server.limits``, when it has the stdio wire this instrumentor measures."""
    try:
        from otel_mcp.server import limits
    except ImportError:
        return None
    wire = getattr(limits, "_Wire", None)
    usable = wire is not None and hasattr(wire, "write") and callable(getattr(limits, "classify_line", None))
    return limits if usable else None


# -- the instrumentor --------------------------------------------------------------------


class McpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds ``TelemetryMiddleware`` to every MCP lowlevel server built while instrumented."""

    _telemetry: McpTelemetry | None = None
    _middleware: TelemetryMiddleware | None = None
    _wrapped: list[tuple[Any, str]] = []  # noqa: RUF012  (what _instrument wrapped, for _uninstrument)
    _replaced: list[tuple[Any, str, Any]] = []  # noqa: RUF012  ((owner, name, original) it replaced: the same)
    _servers: weakref.WeakSet[Any] = weakref.WeakSet()  # noqa: RUF012  (shared by the singleton)

    def instrumentation_dependencies(self) -> Collection[str]:
        return _mcp_instruments

    @property
    def telemetry(self) -> McpTelemetry | None:
        return McpInstrumentor._telemetry

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = McpTelemetry(kwargs.get("meter_provider"))
        McpInstrumentor._telemetry = telemetry
        capture = kwargs.get("capture_arguments")
        if capture is None:
            capture = os.environ.get(CAPTURE_ARGUMENTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        McpInstrumentor._middleware = TelemetryMiddleware(
            telemetry, bool(capture), records_spans(kwargs.get("tracer_provider"))
        )

        def init_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            result = wrapped(*args, **kw)
            try:
                McpInstrumentor.instrument_server(instance)
            except Exception:
                logger.debug("could not instrument an MCP server", exc_info=True)
            return result

        wrapped = McpInstrumentor._wrapped
        wrapt.wrap_function_wrapper(lowlevel_server, "Server.__init__", init_wrapper)
        wrapped.append((lowlevel_server.Server, "__init__"))
        wrapt.wrap_function_wrapper(lowlevel_server, "Server.streamable_http_app", _wrap_http_app)
        wrapped.append((lowlevel_server.Server, "streamable_http_app"))
        sdk_otel = mcp_internals.otel_module()
        if records_spans(kwargs.get("tracer_provider")) and sdk_otel is not None:
            McpInstrumentor._replaced.append((sdk_otel, "otel_span", sdk_otel.otel_span))
            sdk_otel.otel_span = _server_otel_span(sdk_otel.otel_span)
        limits = _stdio_limits()
        if limits is not None:
            McpInstrumentor._replaced += [(limits, "classify_line", limits.classify_line),
                                          (limits._Wire, "write", limits._Wire.write)]
            limits.classify_line = _sized_classify_line(limits.classify_line)
            limits._Wire.write = _sized_write(limits._Wire.write)

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, attribute in McpInstrumentor._wrapped:
            unwrap(owner, attribute)
        McpInstrumentor._wrapped.clear()
        for owner, attribute, original in reversed(McpInstrumentor._replaced):
            setattr(owner, attribute, original)
        McpInstrumentor._replaced.clear()
        for server in list(McpInstrumentor._servers):
            McpInstrumentor.uninstrument_server(server)
        McpInstrumentor._telemetry = None
        McpInstrumentor._middleware = None

    @staticmethod
    def instrument_server(server: Any) -> None:
        """Append the middleware to ``server`` (an ``MCPServer`` or lowlevel ``Server``) once."""
        middleware = McpInstrumentor._middleware
        if middleware is None:
            return
        chain: list[Any] = server.middleware
        if not any(isinstance(m, TelemetryMiddleware) for m in chain):
            # Right after the SDK's OpenTelemetryMiddleware: inside its span, outside everything else.
            position = next((i + 1 for i, m in enumerate(chain) if mcp_internals.is_sdk_otel_middleware(m)), 0)
            chain.insert(position, middleware)
            McpInstrumentor._servers.add(mcp_internals.lowlevel_server(server))

    @staticmethod
    def uninstrument_server(server: Any) -> None:
        chain: list[Any] = server.middleware
        chain[:] = [m for m in chain if not isinstance(m, TelemetryMiddleware)]
