"""Admission on ``/mcp``: bounded work, a body read deadline, and streams that end at once on shutdown.

``Admission`` is the outermost guard of the MCP endpoint (after authentication). It sorts each request:

- a *stream*: a ``GET`` (the standalone SSE stream of a session) or a ``subscriptions/listen`` POST (the
  notification stream of a sessionless 2026-07-28 client). At most ``max_streams`` are open at once;
- any other POST is a *request*: at most ``max_requests_in_flight`` are served at once, whatever the
  client (with or without a session), so sessionless clients cannot pile up work either.

Past a bound the client gets ``503`` with ``Retry-After`` and a JSON-RPC error naming the setting.

The POST body must arrive within ``request_read_timeout_s`` (uvicorn has no body read timeout: a client
that sends a byte now and then would hold its connection and its slot for ever); otherwise ``408``.

``close_streams()`` (called when the server starts shutting down) ends every open stream at once, properly
(the chunked response terminated), while requests in flight keep running until they finish or the
server's drain period ends.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otel_mcp.server.limits import INTERNAL_ERROR, INVALID_REQUEST, jsonrpc_error, send_json

log = logging.getLogger("otel_mcp.server.admission")

LISTEN_METHOD = "subscriptions/listen"
RETRY_AFTER_SECONDS = b"1"


class BodyTimeout(Exception):
    """The request body did not arrive within the read deadline."""


@dataclass
class Gate:
    """The bounds and the live counts ``Admission`` shares with the server (which closes streams at shutdown).

    :param max_requests_in_flight: POSTs (other than listen streams) served at once
    :param max_streams: GET streams and ``subscriptions/listen`` streams open at once
    :param read_timeout: seconds for a POST's whole body to arrive
    :param max_body_bytes: bodies past this size are passed on unread beyond it (the SDK answers 413)
    """

    max_requests_in_flight: int
    max_streams: int
    read_timeout: float
    max_body_bytes: int
    in_flight: int = 0
    streams: set[anyio.CancelScope] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=lambda: {"requests": 0, "streams": 0, "slow_bodies": 0})

    def snapshot(self) -> dict[str, Any]:
        """What ``/readyz`` shows: the work admitted now and the refusals so far."""
        return {"requests_in_flight": self.in_flight, "open_streams": len(self.streams), "refused": dict(self.refused)}

    def close_streams(self) -> int:
        """End every open stream now (shutdown); returns how many there were."""
        scopes = list(self.streams)
        for scope in scopes:
            scope.cancel()
        return len(scopes)


class Admission:
    """ASGI middleware for ``path`` that applies ``gate``; see the module docstring."""

    def __init__(self, app: ASGIApp, gate: Gate, path: str = "/mcp") -> None:
        self.app = app
        self.gate = gate
        self.path = path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (path != self.path and not path.startswith(self.path + "/")):
            await self.app(scope, receive, send)
            return
        method = scope.get("method")
        if method == "POST":
            try:
                messages = await self._read_body(receive)
            except BodyTimeout:
                self.gate.refused["slow_bodies"] += 1
                message = (f"Request body not received within {self.gate.read_timeout:g} s "
                           "(request_read_timeout_s): the connection is closed")
                await send_json(send, 408, jsonrpc_error(None, INVALID_REQUEST, message), [(b"connection", b"close")])
                return
            if messages is None:
                return  # the client hung up before its body was complete: nobody to answer
            receive = _replay(messages, receive)
            streaming = _is_listen(messages)
        else:
            streaming = method == "GET"
        if streaming:
            await self._stream(scope, receive, send)
        else:
            await self._request(scope, receive, send)

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The body's messages (up to ``max_body_bytes``), read within ``read_timeout``; None on disconnect."""
        messages: list[Message] = []
        size = 0
        with anyio.move_on_after(self.gate.read_timeout) as deadline:
            while size <= self.gate.max_body_bytes:
                message = await receive()
                messages.append(message)
                if message["type"] == "http.disconnect":
                    return None
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            raise BodyTimeout
        return messages

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gate.in_flight >= self.gate.max_requests_in_flight:
            self.gate.refused["requests"] += 1
            await _busy(send, f"Server busy: {self.gate.max_requests_in_flight} requests in flight "
                              "(max_requests_in_flight); retry shortly")
            return
        self.gate.in_flight += 1
        counted = True

        def release() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.gate.in_flight -= 1

        async def releasing_send(message: Message) -> None:
            # Released with the answer's last byte: the client may send its next request at once, while
            # the SDK is still winding this one down.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            release()

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(self.gate.streams) >= self.gate.max_streams:
            self.gate.refused["streams"] += 1
            await _busy(send, f"Too many open streams: {self.gate.max_streams} (max_streams); retry later")
            return
        state = {"started": False, "ended": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        with anyio.CancelScope() as cancel_scope:
            self.gate.streams.add(cancel_scope)
            try:
                await self.app(scope, receive, tracked_send)
            finally:
                self.gate.streams.discard(cancel_scope)
        if cancel_scope.cancelled_caught and state["started"] and not state["ended"]:
            with suppress(Exception):  # the client may be gone already
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay


def _is_listen(messages: list[Message]) -> bool:
    body = b"".join(m.get("body", b"") for m in messages)
    if LISTEN_METHOD.encode() not in body:
        return False
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("method") == LISTEN_METHOD


async def _busy(send: Send, message: str) -> None:
    await send_json(send, 503, jsonrpc_error(None, INTERNAL_ERROR, message), [(b"retry-after", RETRY_AFTER_SECONDS)])
