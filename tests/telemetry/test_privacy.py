"""Never a rule body, a tool argument or a token in spans, metrics or logs by default; argument capture is opt-in.

(The bearer token's absence from the server log is tested in ``tests/reliability/test_security.py``; here
the token is checked against the telemetry itself.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from telemetry_support import Otel, instrumented_http, instrumented_server

from otel_mcp.telemetry import mcp as mcp_telemetry

pytestmark = pytest.mark.anyio

BODY = "BODY-SECRET-7f3a9c keep this out of telemetry"
ARGUMENT = "ARG-SECRET-51d2e0"
TOKEN = "TOKEN-SECRET-c0ffee-0123456789abcdef"
RULE = {"id": "secret-rule", "body": BODY, "activation": "auto", "globs": ["**/*.py"],
        "description": "plain description"}


def _everything(otel: Otel) -> str:
    """All span names, attributes, events and links, all metric points' attributes, and the perf log."""
    parts: list[Any] = []
    for span in otel.finished():
        parts.append([span.name, dict(span.attributes or {}), [(e.name, dict(e.attributes or {})) for e in span.events],
                      [dict(link.attributes or {}) for link in span.links], span.status.description])
    for name, metric in otel.metrics().items():
        parts.append([name, [dict(p.attributes or {}) for p in metric.data.data_points]])
    assert otel.telemetry.perf is not None
    otel.telemetry.perf.flush()
    perf_log = otel.telemetry.options.perf_log
    if perf_log is not None and perf_log.exists():
        parts.append(perf_log.read_text())
    return json.dumps(parts, default=str)


async def _exercise(client: Any) -> None:
    await client.call_tool("create_rule", RULE)
    await client.call_tool("compose_rules", {"context_files": [f"src/{ARGUMENT}.py"]})
    await client.call_tool("get_rule", {"id": "secret-rule"})
    await client.call_tool("search_rules", {"query": ARGUMENT})
    await client.read_resource("rules://secret-rule")
    failed = await client.call_tool("get_rule", {"id": ARGUMENT})
    assert failed.is_error


async def test_no_body_argument_or_token_in_telemetry_by_default(otel_factory: Any) -> None:
    otel = otel_factory(auth_token=TOKEN)
    with instrumented_http(otel) as web:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
        async with http, Client(streamable_http_client(web.url, http_client=http)) as client:
            await _exercise(client)
    seen = _everything(otel)
    assert "tools/call create_rule" in seen and "mcp.server.operation.duration" in seen  # telemetry was there
    for secret in (BODY, "BODY-SECRET", ARGUMENT, TOKEN, "TOKEN-SECRET"):
        assert secret not in seen, secret
    assert "gen_ai.tool.call.arguments" not in seen


async def test_argument_capture_is_opt_in(otel: Otel) -> None:
    middleware = mcp_telemetry.McpInstrumentor._middleware
    assert middleware is not None and middleware.capture_arguments is False  # the default
    middleware.capture_arguments = True
    try:
        with instrumented_server(otel) as (server, _):
            async with Client(server) as client:
                await client.call_tool("compose_rules", {"context_files": [f"src/{ARGUMENT}.py"]})
                long_cursor = "x" * (mcp_telemetry.MAX_CAPTURED_ARGUMENTS * 2)
                await client.call_tool("list_rules", {"limit": 3, "cursor": long_cursor})
                await client.list_tools()
    finally:
        middleware.capture_arguments = False
    spans = {s.name: s for s in otel.finished()}
    captured = spans["tools/call compose_rules"].attributes["gen_ai.tool.call.arguments"]
    assert json.loads(str(captured)) == {"context_files": [f"src/{ARGUMENT}.py"]}
    long = str(spans["tools/call list_rules"].attributes["gen_ai.tool.call.arguments"])
    assert len(long) <= mcp_telemetry.MAX_CAPTURED_ARGUMENTS + 3 and long.endswith("...")
    assert "gen_ai.tool.call.arguments" not in spans["tools/list"].attributes
    # Never on metrics, even when captured on spans.
    for point in otel.histogram_points("mcp.server.operation.duration"):
        assert "gen_ai.tool.call.arguments" not in point.attributes


def test_capture_flag_from_the_environment(otel_factory: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(mcp_telemetry.CAPTURE_ARGUMENTS_ENV, "true")
    otel_factory()
    middleware = mcp_telemetry.McpInstrumentor._middleware
    assert middleware is not None and middleware.capture_arguments is True
