"""Request and response payload sizes, on both transports, measured where the bytes are."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import anyio
import pytest
from mcp import Client
from telemetry_support import Otel, instrumented_http, instrumented_server

from otel_mcp.server import limits
from otel_mcp.telemetry import names

pytestmark = pytest.mark.anyio

PROTOCOL = "2025-06-18"


def _by_transport(otel: Otel, name: str) -> dict[str, Any]:
    return {p.attributes["network.transport"]: p for p in otel.histogram_points(name)}


async def test_http_request_and_response_sizes(otel: Otel) -> None:
    with instrumented_http(otel) as web:
        async with Client(web.url) as client:
            await client.call_tool("list_rules", {})
            await client.call_tool("compose_rules", {"context_files": ["a.py"]})
    requests = _by_transport(otel, names.REQUEST_SIZE)["tcp"]
    responses = _by_transport(otel, names.RESPONSE_SIZE)["tcp"]
    assert requests.attributes["network.protocol.name"] == "http"
    assert requests.count >= 2 and responses.count >= 2
    assert requests.sum > 0 and responses.sum > 0
    assert tuple(responses.explicit_bounds) == names.SIZE_BUCKETS
    assert set(responses.attributes) == {"network.transport", "network.protocol.name"}  # no per-request attributes


async def test_http_sizes_of_a_streamed_response(otel: Otel) -> None:
    """A response sent in several body messages (an SSE stream) is one size, recorded with its last message;
    other paths and methods pass through unmeasured."""
    from otel_mcp.telemetry.mcp import WireSizeMiddleware

    chunks = [b"event: message\r\n", b"data: {}\r\n\r\n", b""]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    middleware = WireSizeMiddleware(app, path="/mcp")
    post = {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"content-length", b"42")]}
    await middleware(post, receive, send)
    await middleware({**post, "path": "/other"}, receive, send)
    await middleware({**post, "method": "GET"}, receive, send)
    assert len(sent) == 3 * (1 + len(chunks))  # every message reached the server's send, in order
    requests = _by_transport(otel, names.REQUEST_SIZE)["tcp"]
    responses = _by_transport(otel, names.RESPONSE_SIZE)["tcp"]
    assert (requests.count, requests.sum) == (1, 42)
    assert (responses.count, responses.sum) == (1, sum(map(len, chunks)))


async def test_stdio_request_and_response_sizes(otel: Otel) -> None:
    """The real stdio wire (``serve_wire`` over OS pipes): every line in and out is measured, in bytes."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    fin, fout = os.fdopen(in_r, "rb"), os.fdopen(out_w, "wb")
    client_in, client_out = os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb")
    replies: list[dict[str, Any]] = []
    got_init = threading.Event()

    def read_replies() -> None:
        for raw in client_out:
            replies.append(json.loads(raw))
            got_init.set()

    def write_requests() -> None:
        def send(message: dict[str, Any]) -> None:
            client_in.write((json.dumps(message) + "\n").encode())
            client_in.flush()

        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        got_init.wait(20)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_rules", "arguments": {}}})
        client_in.close()  # end of input: the wire drains the two requests, then stops

    reader = threading.Thread(target=read_replies, daemon=True)
    writer = threading.Thread(target=write_requests, daemon=True)
    reader.start()
    writer.start()
    try:
        with instrumented_server(otel) as (server, _), anyio.fail_after(60):
            await limits.serve_wire(server, limits._Wire(fin, fout, 1_000_000, 5.0))
    finally:
        fout.close()
    reader.join(10)
    assert sorted(r.get("id") for r in replies if "id" in r) == [1, 2, 3]
    requests = _by_transport(otel, names.REQUEST_SIZE)["pipe"]
    responses = _by_transport(otel, names.RESPONSE_SIZE)["pipe"]
    assert requests.count == 4  # initialize, initialized, tools/list, tools/call
    assert responses.count == 3
    assert responses.sum > 0 and requests.sum > 0
    assert set(requests.attributes) == {"network.transport"}
