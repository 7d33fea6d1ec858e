"""MCP requests: the SDK's server span enriched, semconv metrics, _meta propagation, both transports."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from telemetry_support import Otel, instrumented_http, instrumented_server

from otel_mcp.server.app import build_server
from otel_mcp.server.context import RulesContext
from otel_mcp.telemetry import names
from otel_mcp.telemetry.mcp import McpInstrumentor, TelemetryMiddleware

pytestmark = pytest.mark.anyio

RULE = {"id": "py-style", "body": "Use type hints.", "activation": "auto", "globs": ["**/*.py"]}


def _server_spans(otel: Otel) -> list[Any]:
    return [s for s in otel.finished() if s.kind is SpanKind.SERVER]


async def test_every_method_type_in_process(otel: Otel) -> None:
    with instrumented_server(otel) as (server, _):
        async with Client(server) as client:
            await client.call_tool("create_rule", RULE)
            await client.list_tools()
            await client.call_tool("compose_rules", {"context_files": ["a.py"]})
            await client.list_resources()
            await client.read_resource("rules://py-style")
            await client.list_prompts()
            await client.get_prompt("compose", {"context_files": "a.py"})
            failed = await client.call_tool("get_rule", {"rule_id": "missing"})
            assert failed.is_error
    spans = {s.name: s for s in _server_spans(otel)}
    assert {"tools/call create_rule", "tools/list", "tools/call compose_rules", "resources/list", "resources/read",
            "prompts/list", "prompts/get compose", "tools/call get_rule"} <= set(spans)
    assert all(s.attributes["network.transport"] == "pipe" for s in spans.values())
    error_span = spans["tools/call get_rule"]
    assert error_span.attributes["error.type"] == names.TOOL_ERROR
    assert error_span.status.status_code is StatusCode.ERROR
    assert spans["tools/call compose_rules"].status.status_code is StatusCode.UNSET
    # Exactly one SERVER span per request: ours adds none.
    ids = [(s.name, s.attributes.get("jsonrpc.request.id")) for s in _server_spans(otel)]
    assert len(ids) == len(set(ids)), "a request got more than one SERVER span"

    points = otel.histogram_points("mcp.server.operation.duration")
    by_op = {(p.attributes["mcp.method.name"], p.attributes.get("gen_ai.tool.name")): p for p in points}
    compose = by_op["tools/call", "compose_rules"]
    assert compose.count == 1
    assert tuple(compose.explicit_bounds) == names.FINE_DURATION_BUCKETS
    assert compose.attributes["gen_ai.operation.name"] == "execute_tool"
    assert "error.type" not in compose.attributes
    assert by_op["tools/call", "get_rule"].attributes["error.type"] == names.TOOL_ERROR
    for p in points:  # no high-cardinality attributes
        assert not set(p.attributes) & {"mcp.session.id", "jsonrpc.request.id", "mcp.resource.uri", "client.port"}
    errors = otel.points(names.TOOL_ERRORS)
    assert [(dict(p.attributes), p.value) for p in errors] == [
        ({"gen_ai.tool.name": "get_rule", "error.type": names.TOOL_ERROR}, 1)
    ]


async def test_protocol_errors_are_not_server_errors(otel: Otel) -> None:
    with instrumented_server(otel) as (server, _):
        async with Client(server) as client:
            with pytest.raises(Exception):  # noqa: B017  (the SDK's MCPError for -32602)
                await client.get_prompt("compose", {"token_budget": "x"} | {"unknown": "y"})
            with pytest.raises(Exception):  # noqa: B017
                await client.read_resource("rules://nope")
    spans = [s for s in _server_spans(otel) if s.name.startswith(("prompts/get", "resources/read"))]
    assert spans
    for span in spans:
        code = span.attributes.get("rpc.response.status_code")
        if code is not None and int(str(code)) in names.PROTOCOL_ERROR_CODES:
            assert "error.type" not in span.attributes
            assert span.status.status_code is StatusCode.UNSET


async def test_the_server_span_is_the_sdks(otel: Otel) -> None:
    """Our stand-in for ``otel_span`` enters the SDK's own: one span, the SDK's scope, the server-side error
    rules."""
    with instrumented_server(otel) as (server, _):
        async with Client(server) as client:
            await client.call_tool("compose_rules", {"context_files": ["a.py"]})
            with pytest.raises(Exception):  # noqa: B017  (the SDK's MCPError for -32602)
                await client.read_resource("rules://nope")
    spans = {s.name: s for s in _server_spans(otel)}
    compose = spans["tools/call compose_rules"]
    assert compose.attributes["network.transport"] == "pipe" and compose.attributes["mcp.method.name"] == "tools/call"
    assert compose.instrumentation_scope.name == "mcp-python-sdk"
    failed = spans["resources/read"]
    assert "error.type" not in failed.attributes and failed.status.status_code is StatusCode.UNSET


async def test_streamable_http_span_attributes_meta_parent_and_session(otel: Otel) -> None:
    tracer = trace.get_tracer("test")
    with instrumented_http(otel) as web:
        async with Client(web.url, mode="legacy") as client:  # the handshake era has sessions
            await client.call_tool("create_rule", RULE)
        with tracer.start_as_current_span("agent-turn") as root:
            async with Client(web.url, mode="legacy") as client:
                await client.call_tool("compose_rules", {"context_files": ["a.py"]})
            root_trace = root.get_span_context().trace_id
        async with Client(web.url) as modern:  # 2026-07-28: no session, per-request envelope
            await modern.call_tool("list_rules", {})
    spans = otel.finished()
    server_spans = [s for s in spans if s.kind is SpanKind.SERVER]
    compose = next(s for s in server_spans if s.name == "tools/call compose_rules")
    attrs = compose.attributes
    assert attrs["network.transport"] == "tcp"
    assert attrs["network.protocol.name"] == "http"
    assert attrs["client.address"] == "127.0.0.1"
    assert isinstance(attrs["client.port"], int)
    assert attrs.get("mcp.session.id")
    # The parent comes from params._meta, injected by the real client's "MCP send" CLIENT span.
    assert compose.context.trace_id == root_trace
    client_span = next(s for s in spans if s.kind is SpanKind.CLIENT and s.name == "MCP send tools/call compose_rules")
    assert compose.parent is not None and compose.parent.span_id == client_span.context.span_id
    # The composition span is a child of the server span.
    compose_span = otel.finished(names.SPAN_COMPOSE)[-1]
    assert compose_span.parent is not None and compose_span.parent.span_id == compose.context.span_id

    points = otel.histogram_points("mcp.server.operation.duration")
    http_points = [p for p in points if p.attributes.get("network.transport") == "tcp"]
    assert http_points and all(p.attributes["network.protocol.name"] == "http" for p in http_points)
    sessions = otel.histogram_points("mcp.server.session.duration")
    assert sum(p.count for p in sessions) == 2
    assert any(s.name == "initialize" for s in server_spans)
    assert tuple(sessions[0].explicit_bounds) == names.SEMCONV_DURATION_BUCKETS
    active = {p.attributes["network.transport"]: p.value for p in otel.points(names.ACTIVE_SESSIONS)}
    assert active["tcp"] == 0
    in_flight = {p.attributes["network.transport"]: p.value for p in otel.points(names.REQUESTS_IN_FLIGHT)}
    assert in_flight == {"pipe": 0, "tcp": 0}
    sizes = otel.histogram_points(names.REQUEST_SIZE)
    assert sizes and all(p.sum > 0 for p in sizes)


async def test_http_traceparent_header_becomes_a_link_when_meta_chose_the_parent(otel: Otel) -> None:
    """A client whose HTTP layer sends one trace context (the header) and whose MCP layer another (``_meta``):
    the span's parent is ``_meta``'s, the header's context is linked."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http_trace, http_span = 0x1234567890ABCDEF1234567890ABCDEF, 0x1122334455667788
    header = {"traceparent": f"00-{http_trace:032x}-{http_span:016x}-01"}
    tracer = trace.get_tracer("test")
    with instrumented_http(otel) as web:
        http = httpx2.AsyncClient(headers=header)
        async with http, Client(streamable_http_client(web.url, http_client=http)) as client:
            with tracer.start_as_current_span("agent-turn") as root:  # the client injects _meta from this
                await client.call_tool("list_rules", {})
    linked = next(s for s in _server_spans(otel) if s.name == "tools/call list_rules")
    assert linked.context.trace_id == root.get_span_context().trace_id
    assert [(link.context.trace_id, link.context.span_id, dict(link.attributes or {})) for link in linked.links] == [
        (http_trace, http_span, {"otel_mcp.link": "http.request"})
    ]


async def test_real_stdio_client_meta_reaches_the_server(tmp_path: Any, server_env: dict[str, str]) -> None:
    """A real stdio subprocess: the client's trace id shows up in the server's JSON performance log."""
    perf_log = tmp_path / "perf.log"
    env = {**server_env, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_MCP_PERF_LOG": str(perf_log)}
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "otel_mcp.cli", "serve", "--db", str(tmp_path / "rules.db"), "--files-root", str(tmp_path)], env=env)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("agent-turn") as root:
        async with Client(params) as client:
            await client.call_tool("list_rules", {})
        trace_id = format(root.get_span_context().trace_id, "032x")
    lines = [json.loads(line) for line in perf_log.read_text().splitlines()]
    calls = [r for r in lines if r["event"] == "request" and r["target"] == "list_rules"]
    assert calls and calls[0]["trace_id"] == trace_id
    assert calls[0]["transport"] == "pipe" and calls[0]["outcome"] == "ok"


def test_instrument_and_uninstrument_server(otel: Otel) -> None:
    with instrumented_server(otel) as (server, _):
        pass
    assert sum(isinstance(m, TelemetryMiddleware) for m in server.middleware) == 1
    McpInstrumentor.instrument_server(server)  # idempotent
    assert sum(isinstance(m, TelemetryMiddleware) for m in server.middleware) == 1
    McpInstrumentor().uninstrument()
    assert not any(isinstance(m, TelemetryMiddleware) for m in server.middleware)
    rules2 = RulesContext.open(otel.settings)
    try:
        assert not any(isinstance(m, TelemetryMiddleware) for m in build_server(rules2).middleware)
    finally:
        rules2.close()


async def test_suppressed_instrumentation_records_nothing(otel: Otel) -> None:
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

    with instrumented_server(otel) as (server, _):
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            async with Client(server) as client:
                await client.list_tools()
        finally:
            detach(token)
    assert not [p for p in otel.histogram_points("mcp.server.operation.duration")
                if p.attributes["mcp.method.name"] == "tools/list"]


def test_transport_attributes_are_made_once_per_kind_of_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stateless-path connection lives for one request: its attributes come from a bounded table."""
    from types import SimpleNamespace

    from otel_mcp.telemetry import mcp as mcp_telemetry

    monkeypatch.setattr(mcp_telemetry, "_TRANSPORTS", {})
    monkeypatch.setattr(mcp_telemetry, "_MAX_TRANSPORTS", 2)

    def transport(http_version: str | None, session_id: str | None, state: dict[str, Any] | None = None) -> Any:
        request = None if http_version is None else SimpleNamespace(scope={"http_version": http_version})
        ctx: Any = SimpleNamespace(request=request)
        return mcp_telemetry._new_transport(ctx, SimpleNamespace(session_id=session_id), state)

    first = transport("1.1", None)
    assert transport("1.1", None) is first
    assert first.span_attrs == {"network.transport": "tcp", "network.protocol.name": "http",
                                "network.protocol.version": "1.1"}
    state: dict[str, Any] = {}
    with_session = transport("1.1", "s-1", state)
    assert with_session is not first and state["otel_mcp.transport"] is with_session
    assert with_session.span_attrs["mcp.session.id"] == "s-1"
    stdio = transport(None, None)  # a third kind: the table (2 here) starts over
    assert stdio.key == "pipe" and stdio.metric_attrs == {"network.transport": "pipe"}
    assert len(mcp_telemetry._TRANSPORTS) == 1
    assert transport("1.1", None) is not first
