"""Raw JSON-RPC fuzzing of the streamable HTTP transport (a real server process on 127.0.0.1).

Every reply must be a well-formed JSON-RPC message (an error for every malformed
input), no reply may carry a traceback, no request may end in a 500, and the
server must still serve a normal session afterwards with no traceback in its log.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fuzzgen import Case, generate
from relwire import (
    ACCEPT,
    HttpProc,
    HttpReply,
    RawHttp,
    assert_no_traceback,
    initialize_message,
    is_jsonrpc_error,
    is_jsonrpc_response,
)

SEED = 20261125
HTTP_CASES = 6000
BODY_LIMIT = 64 * 1024
ALLOWED_STATUSES = {200, 202, 400, 403, 404, 405, 406, 413, 415, 421, 503}


@pytest.fixture(scope="module")
def fuzz_server(module_http: Callable[..., HttpProc]) -> Iterator[HttpProc]:
    server = module_http(env={"OTEL_MCP_MAX_REQUEST_BYTES": str(BODY_LIMIT)})
    yield server
    # Module teardown: the server survived everything and logged no traceback.
    assert server.process.poll() is None, f"server died:\n{server.output()[-3000:]}"
    assert server.stop() == 0
    assert_no_traceback(server.output())


def check_reply(case: Case, reply: HttpReply) -> None:
    where = f"{case.kind} {case.payload[:200]!r} -> {reply.status} {reply.text[:300]}"
    assert reply.status in ALLOWED_STATUSES, where
    assert_no_traceback(reply.text)
    if reply.status == 202:
        assert not reply.body and not case.must_error and case.reply_id is None, where
        return
    assert reply.messages, where
    responses = [m for m in reply.messages if not (isinstance(m, dict) and "method" in m)]
    assert len(responses) == 1, where
    response = responses[0]
    assert is_jsonrpc_response(response), where
    if case.must_error or reply.status >= 400:
        assert is_jsonrpc_error(response), where
    if reply.status == 200 and case.reply_id is not None:
        assert json.dumps(response["id"]) == case.reply_id, where


def test_fuzz_cases_in_a_session(fuzz_server: HttpProc) -> None:
    raw = RawHttp(fuzz_server.port)
    raw.open_session()
    cases = generate(SEED, HTTP_CASES)
    kinds: dict[str, int] = {}
    for index, case in enumerate(cases):
        # One in ten is sent without the session header (a would-be new session).
        reply = raw.post(case.payload, session=index % 10 != 0)
        check_reply(case, reply)
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
    assert len(kinds) >= 12 and sum(kinds.values()) == HTTP_CASES
    # The session is still usable after thousands of bad messages.
    ping = raw.post({"jsonrpc": "2.0", "id": "after", "method": "ping"})
    assert ping.status == 200 and ping.messages[-1] == {"jsonrpc": "2.0", "id": "after", "result": {}}


@pytest.mark.parametrize("size", [BODY_LIMIT + 1, BODY_LIMIT * 2, 1024 * 1024])
@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_bodies_get_413_naming_the_limit(fuzz_server: HttpProc, size: int, chunked: bool) -> None:
    raw = RawHttp(fuzz_server.port)
    raw.open_session()
    text = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                       "params": {"name": "create_rule", "arguments": {"id": "big", "body": "x" * size}}})
    body: Any = text.encode()
    if chunked:
        data = body
        body = iter([data[i : i + 8192] for i in range(0, len(data), 8192)])
    reply = _post_any(raw, body)
    assert reply.status == 413, reply.text[:300]
    message = json.loads(reply.body)
    assert is_jsonrpc_error(message)
    assert str(BODY_LIMIT) in message["error"]["message"] and "max_request_bytes" in message["error"]["message"]


def _post_any(raw: RawHttp, body: Any) -> HttpReply:
    # An iterable body without Content-Length goes out with Transfer-Encoding: chunked.
    headers = {"Content-Type": "application/json", "Accept": ACCEPT, "Mcp-Session-Id": raw.session_id or ""}
    try:
        return raw.request("POST", "/mcp", body, headers)
    finally:
        raw.close()  # the server may stop reading an oversized body: never reuse that connection


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 400),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 400),
        ({"Accept": "text/html"}, 406),
        ({"Accept": "application/json"}, 406),
        ({"Mcp-Session-Id": "no-such-session"}, 404),
        ({"Mcp-Protocol-Version": "1999-01-01"}, 400),
    ],
)
def test_header_faults_get_jsonrpc_errors(fuzz_server: HttpProc, headers: dict[str, str], status: int) -> None:
    raw = RawHttp(fuzz_server.port)
    raw.open_session()
    reply = raw.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers)
    assert reply.status == status, reply.text[:300]
    assert len(reply.messages) == 1 and is_jsonrpc_error(reply.messages[0]), reply.text[:300]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "HEAD", "OPTIONS", "GET", "DELETE"])
def test_other_http_methods(fuzz_server: HttpProc, method: str) -> None:
    raw = RawHttp(fuzz_server.port)
    reply = raw.request(method, "/mcp", headers={"Accept": ACCEPT})
    assert (reply.status < 500 and reply.status != 200) or method == "GET", (method, reply.status)
    assert_no_traceback(reply.text)
    if reply.body and method != "HEAD":
        assert is_jsonrpc_error(json.loads(reply.body)), reply.text[:300]


TRUNCATIONS = [
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    b'{"jsonrpc"',
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",
    b"POST /mcp HTTP/1.1\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    b'5\r\n{"jso',
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n{}",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain-text port
    b"GARBAGE\r\n\r\n",
    b"",
]


def test_truncated_and_broken_streams_do_not_hurt_the_server(fuzz_server: HttpProc) -> None:
    raw = RawHttp(fuzz_server.port)
    raw.open_session()
    for round_ in range(5):
        for data in TRUNCATIONS:
            with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=10) as sock:
                sock.sendall(data)
                if round_ % 2:
                    sock.shutdown(socket.SHUT_WR)  # half-close, then read whatever comes back
                    try:
                        answer = sock.recv(65536)
                    except (TimeoutError, ConnectionResetError):
                        answer = b""
                    assert_no_traceback(answer.decode("latin-1"))
        # A session in progress while others misbehave keeps working.
        reply = raw.post({"jsonrpc": "2.0", "id": round_, "method": "ping"})
        assert reply.status == 200 and reply.messages[-1]["result"] == {}
    assert raw.post(initialize_message(), session=False).status == 200
