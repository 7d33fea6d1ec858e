"""Sessions, streams and connections cannot be exhausted (real server process, raw HTTP and the official client).

- at ``max_sessions``, the session idle longest is evicted (its next request: 404, so its client
  initializes again); only when every session is busy is a new client refused (503);
- the idle timeout is a setting (``session_idle_timeout_s``);
- sessionless (2026-07-28) requests are bounded by ``max_requests_in_flight``, ``GET`` and
  ``subscriptions/listen`` streams by ``max_streams``, each refusal a 503 naming its setting;
- slow connections (slowloris: headers or body a byte at a time) are closed after ``request_read_timeout_s``
  while a real client keeps working.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from relwire import HttpProc, RawHttp, initialize_message, is_jsonrpc_error, open_get_stream, start_http

MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN,
               "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
               "io.modelcontextprotocol/clientCapabilities": {}}


def ping(raw: RawHttp) -> int:
    return raw.post({"jsonrpc": "2.0", "id": 99, "method": "ping"}).status


def sessions(server: HttpProc, n: int) -> list[RawHttp]:
    clients = []
    for _ in range(n):
        raw = RawHttp(server.port)
        raw.open_session()
        clients.append(raw)
    return clients


def modern_post(port: int, method: str, params: dict[str, Any], name: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": MODERN_META}})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    conn.request("POST", "/mcp", body=body, headers=headers)
    return conn.getresponse()


def refusal(response: http.client.HTTPResponse) -> str:
    body = json.loads(response.read())
    assert is_jsonrpc_error(body), body
    return str(body["error"]["message"])


@pytest.mark.anyio
async def test_abandoned_sessions_make_room_and_busy_ones_are_kept(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_MAX_SESSIONS": "4"})
    try:
        abandoned = sessions(server, 4)  # the limit, all idle: clients that never came back
        (newcomer,) = sessions(server, 1)  # a handshake client: admitted
        assert ping(newcomer) == 200
        async with Client(f"http://127.0.0.1:{server.port}/mcp") as client:  # the official client too
            assert not (await client.call_tool("list_rules", {})).is_error
        assert ping(abandoned[0]) == 404  # evicted first (idle longest): its client must initialize again
        assert ping(abandoned[-1]) == 200  # the most recently active ones stay
        # Every session busy (an open stream each): nothing may be evicted, the new client is refused.
        busy = sessions(server, 4)
        streams = [open_get_stream(server.port, raw.session_id or "") for raw in busy]
        assert all(stream.status == 200 for stream in streams)
        reply = RawHttp(server.port).post(initialize_message(), session=False)
        assert reply.status == 503 and is_jsonrpc_error(reply.messages[0]), reply.text
        assert all(ping(raw) == 200 for raw in busy)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_idle_session_timeout_is_a_setting(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_SESSION_IDLE_TIMEOUT_S": "1"})
    try:
        kept, dropped = sessions(server, 2)
        for _ in range(4):
            time.sleep(0.5)
            assert ping(kept) == 200  # activity keeps a session
        assert ping(dropped) == 404  # 2 s without a request
    finally:
        assert server.stop() == 0


def test_requests_in_flight_and_streams_are_bounded_separately(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_MAX_REQUESTS_IN_FLIGHT": "1", "OTEL_MCP_MAX_STREAMS": "2"})
    try:
        # Two streams (a session's GET stream and a sessionless listen stream) fill max_streams ...
        (raw,) = sessions(server, 1)
        get_stream = open_get_stream(server.port, raw.session_id or "")
        listen = modern_post(server.port, "subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        assert get_stream.status == 200 and listen.status == 200
        third = modern_post(server.port, "subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        assert third.status == 503 and third.getheader("retry-after") == "1"
        assert "(max_streams)" in refusal(third)
        # ... while requests still pass: they are bounded on their own (here: one at a time).
        statuses: list[int] = []
        messages: list[str] = []

        def call() -> None:
            response = modern_post(server.port, "tools/call", {"name": "compose_rules", "arguments": {}},
                                   name="compose_rules")
            statuses.append(response.status)
            if response.status == 503:
                messages.append(refusal(response))
            else:
                response.read()

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert set(statuses) == {200, 503}, statuses
        assert all("(max_requests_in_flight)" in message for message in messages), messages
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz", timeout=5) as response:
            admission = json.loads(response.read())["checks"]["admission"]
        assert admission["refused"]["requests"] == len(messages) and admission["refused"]["streams"] == 1, admission
        assert admission["open_streams"] == 2, admission
        assert ping(raw) == 200
    finally:
        assert server.stop() == 0


def slow_connection(port: int, body: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if body:
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{")
    else:
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


@pytest.mark.anyio
async def test_slow_connections_time_out_while_a_real_client_works(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_REQUEST_READ_TIMEOUT_S": "1"})
    try:
        slow = [slow_connection(server.port, body=i % 2 == 0) for i in range(20)]
        started = time.monotonic()
        async with Client(f"http://127.0.0.1:{server.port}/mcp") as client:
            for _ in range(5):
                for sock in slow:  # keep trickling: one byte each, as slowloris does
                    with contextlib.suppress(OSError):  # already closed by the server
                        sock.send(b" ")
                assert not (await client.call_tool("list_rules", {})).is_error
        answers = []
        for sock in slow:
            sock.settimeout(5)
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
            answers.append(data)
            sock.close()
        closed_after = time.monotonic() - started
        assert closed_after < 8, closed_after  # read timeout 1 s; a connection left open would wait out recv's 5 s
        body_answers = answers[0::2]
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in body_answers), body_answers[:2]
        assert all(b"request_read_timeout" in answer for answer in body_answers)
        assert all(answer == b"" for answer in answers[1::2])  # slow headers: closed without an answer
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()
