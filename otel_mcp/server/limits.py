"""Wire guards: every refusal is a JSON-RPC error, every limit has a clear message.

The SDK already enforces the request body size (``max_request_body_size``, 413)
and the number of concurrent HTTP sessions (``max_sessions``, 503); this module
does not reimplement them. It adds what the SDK leaves out:

- ``JsonRpcErrorBodies`` (HTTP): the SDK answers some refusals on ``/mcp`` with
  a plain-text or empty body (bad Host or Origin header, wrong Content-Type,
  body too large, 406/405 of the modern path). This middleware rewrites those
  into JSON-RPC error objects (``id: null``) and names the limit when one was hit.
- ``serve_stdio`` (stdio): the SDK's stdio transport silently drops a line that
  is not a valid JSON-RPC message, so a client waiting for that request's reply
  hangs. Here such a line gets a ``-32700`` parse error or a ``-32600`` invalid
  request reply (with the request's id when it can be read), a line longer than
  ``max_request_bytes`` is refused without being buffered whole, and SIGTERM or
  end of input lets in-flight requests finish (bounded by a grace period)
  before the server stops.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http import HTTPStatus
from typing import IO, Any, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp_types as types
from anyio.abc import ObjectReceiveStream as MemoryObjectReceiveStream
from anyio.abc import ObjectSendStream as MemoryObjectSendStream
from anyio.lowlevel import EventLoopToken
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otel_mcp import mcp_internals

log = logging.getLogger("otel_mcp.server.limits")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
SHUTTING_DOWN = -32000  # server-defined: the server is draining and takes no new requests
DEFAULT_GRACE_SECONDS = 2.0  # stdio: in-flight requests get this long to finish at SIGTERM or end of input


def jsonrpc_error(request_id: str | int | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


BAD_ID = "'id' must be a string or an integer (MCP forbids null)"


# -- HTTP ------------------------------------------------------------------------


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    all_headers = [
        *(headers or []),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


class JsonRpcErrorBodies:
    """Rewrite non-JSON error responses under ``path`` into JSON-RPC error bodies.

    :param app: the ASGI app (the SDK's Starlette app)
    :param path: the MCP endpoint path (default ``/mcp``)
    :param max_request_bytes: the configured body limit, named in the 413 message
    """

    def __init__(self, app: ASGIApp, path: str = "/mcp", max_request_bytes: int | None = None) -> None:
        self.app = app
        self.path = path.rstrip("/")
        self.max_request_bytes = max_request_bytes

    def _message(self, status: int, text: str) -> str:
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            if self.max_request_bytes is None:
                return "Request body too large"
            return f"Request body too large; the limit is {self.max_request_bytes} bytes (max_request_bytes)"
        if text:
            return text
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return f"HTTP {status}"

    async def _screen_body(self, receive: Receive) -> tuple[Receive, dict[str, Any] | None, bool]:
        """Read the body (up to the limit) to refuse a request with an unusable id, then replay it.

        The SDK reads ``"id": null`` or ``"id": 1.5`` as a *notification*, answers 202 and drops it, so the
        client waits forever for its reply; MCP says a request id is a string or an integer, never null.
        Past the size limit nothing is checked: the SDK refuses the body with 413.
        """
        limit = self.max_request_bytes if self.max_request_bytes is not None else 4 * 1024 * 1024
        messages: list[Message] = []
        size = 0
        complete = False
        while size <= limit:
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect":
                return receive, None, True
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                complete = True
                break
        refusal = None
        if complete and size <= limit:
            refusal = request_id_refusal(b"".join(m.get("body", b"") for m in messages))

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        return replay, refusal, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (path != self.path and not path.startswith(self.path + "/")):
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "POST":
            receive, refusal, gone = await self._screen_body(receive)
            if gone:
                # The client hung up before sending its whole body: there is nobody to answer. (The SDK
                # would log a ClientDisconnect traceback per such request: a log flood anyone can cause.)
                log.debug("client disconnected before the request body was complete")
                return
            if refusal is not None:
                await send_json(send, 400, refusal)
                return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: dict[str, Any] = {}
        chunks: list[bytes] = []
        state = {"started": False, "ended": False}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await screened_send(message)

        async def screened_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if status >= 400 and not content_type.lower().startswith("application/json"):
                    held["start"] = message
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop("start")
                status = int(start["status"])
                text = b"".join(chunks).decode("utf-8", "replace").strip()[:500]
                code = INTERNAL_ERROR if status >= 500 else INVALID_REQUEST
                kept = [
                    (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")
                ]
                await send_json(send, status, jsonrpc_error(None, code, self._message(status, text)), kept)
                return
            await send(message)

        await self.app(scope, receive, guarded_send)
        if state["started"] and not state["ended"] and "start" not in held:
            # sse-starlette ends a stream on shutdown by cancelling it, without the final body message: the
            # client got a truncated chunked response and uvicorn logged "ASGI callable returned without
            # completing response" for every open GET stream. End it properly.
            with suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def request_id_refusal(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error for a request whose ``id`` is present but not a string or an integer, else ``None``."""
    if b'"id"' not in body or b'"method"' not in body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None  # the SDK answers with a parse error
    if not isinstance(data, dict) or "id" not in data or not isinstance(data.get("method"), str):
        return None
    request_id = data["id"]
    if isinstance(request_id, str | int) and not isinstance(request_id, bool):
        return None
    return jsonrpc_error(None, INVALID_REQUEST, f"Invalid request: {BAD_ID}")


# -- stdio -----------------------------------------------------------------------


def classify_line(text: str) -> tuple[bool, dict[str, Any] | None, Any]:
    """Decide what to do with one line of stdio input.

    Returns ``(forward, reply, request_id)``: ``forward`` is True for a valid
    JSON-RPC message (the SDK handles it; ``request_id`` is its id when it is a
    request); otherwise ``reply`` is the error to send back (``None`` for a
    malformed *response*, which JSON-RPC never answers).
    """
    notification = False
    try:
        message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValueError:
        pass
    else:
        if isinstance(message, types.JSONRPCRequest):
            return True, None, message.id
        if not (isinstance(message, types.JSONRPCNotification) and '"id"' in text):
            return True, None, None
        # ``"id": null`` parses as a notification, which the SDK would silently ignore; MCP forbids a
        # null id on a request, so it gets the invalid-request reply below.
        notification = True
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False, jsonrpc_error(None, PARSE_ERROR, "Parse error: the line is not valid JSON"), None
    if notification and not (isinstance(data, dict) and "id" in data):
        return True, None, None
    if isinstance(data, list):
        reason = "batch requests are not supported" if data else "an empty array is not a JSON-RPC message"
        return False, jsonrpc_error(None, INVALID_REQUEST, f"Invalid request: {reason}"), None
    if not isinstance(data, dict):
        reply = jsonrpc_error(None, INVALID_REQUEST, "Invalid request: a JSON-RPC message must be an object")
        return False, reply, None
    raw_id = data.get("id")
    request_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    if "method" not in data and ("result" in data or "error" in data):
        return False, None, None  # a malformed response: log-worthy, never answered
    if data.get("jsonrpc") != "2.0":
        reason = "'jsonrpc' must be \"2.0\""
    elif not isinstance(data.get("method"), str):
        reason = "'method' must be a string"
    elif "id" in data and request_id is None:
        reason = BAD_ID
    elif "params" in data and not isinstance(data["params"], dict):
        reason = "'params' must be an object"
    else:
        reason = "the message does not match any JSON-RPC message shape"
    return False, jsonrpc_error(request_id, INVALID_REQUEST, f"Invalid request: {reason}"), None


class _Wire:
    """Line-oriented, thread-offloaded access to the stdio pipes, with request accounting."""

    def __init__(self, fin: IO[bytes], fout: IO[bytes], max_line_bytes: int, grace: float) -> None:
        self._fin = fin
        self._fout = fout
        self.max_line_bytes = max_line_bytes
        self.grace = grace
        self.draining = False
        self.closed = False
        self.pending: dict[str, int] = {}  # json(id) -> requests with that id still unanswered
        self._write_lock = anyio.Lock()
        self._lines: MemoryObjectReceiveStream[bytes | None] | None = None
        self.stats = {"forwarded": 0, "rejected": 0, "oversized": 0}

    # the SDK's stdin: an async iterator of text lines --------------------------

    def __aiter__(self) -> _Wire:
        return self

    def _read_lines(self, send: MemoryObjectSendStream[bytes | None], token: EventLoopToken) -> None:
        """Daemon thread: read lines (at most ``max_line_bytes`` kept) and hand them to the event loop.

        A daemon thread, not an anyio worker: a worker blocked reading a pipe nobody closes would keep
        the process from exiting after SIGTERM. ``None`` stands for a line over the limit, ``b""`` for EOF.
        """
        limit = self.max_line_bytes
        try:
            while True:
                raw = self._fin.readline(limit + 1)
                item: bytes | None = raw
                if len(raw) > limit and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the line without keeping it
                        raw = self._fin.readline(64 * 1024)
                    item = None
                anyio.from_thread.run(send.send, item, token=token)
                if item == b"":
                    return
        except Exception:  # the loop is gone or the pipe broke: nothing left to read for
            return

    async def _next_raw(self) -> bytes | None:
        if self._lines is None:
            send, self._lines = anyio.create_memory_object_stream[bytes | None](16)
            token = anyio.lowlevel.current_token()
            threading.Thread(target=self._read_lines, args=(send, token), name="otel-mcp-stdin", daemon=True).start()
        try:
            return await self._lines.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return b""

    async def __anext__(self) -> str:
        while True:
            if self.closed:
                raise StopAsyncIteration
            raw = await self._next_raw()
            if raw == b"":
                await self.drain()
                raise StopAsyncIteration
            if raw is None:
                self.stats["oversized"] += 1
                await self.reply(
                    jsonrpc_error(
                        None,
                        INVALID_REQUEST,
                        f"Request too large: the limit is {self.max_line_bytes} bytes per message (max_request_bytes)",
                    )
                )
                continue
            text = raw.decode("utf-8", "replace")
            if not text.strip():
                continue
            forward, reply, request_id = classify_line(text)
            if not forward:
                self.stats["rejected"] += 1
                if reply is not None:
                    await self.reply(reply)
                continue
            if request_id is not None:
                if self.draining:
                    await self.reply(jsonrpc_error(request_id, SHUTTING_DOWN, "Server is shutting down"))
                    continue
                key = json.dumps(request_id)
                self.pending[key] = self.pending.get(key, 0) + 1
            self.stats["forwarded"] += 1
            return text

    async def drain(self) -> None:
        """Stop taking requests and wait (up to ``grace`` seconds) for the in-flight ones to be answered."""
        self.draining = True
        with anyio.move_on_after(self.grace):
            while any(self.pending.values()):
                await anyio.sleep(0.01)

    # the SDK's stdout: write + flush ------------------------------------------

    async def write(self, text: str) -> None:
        self._account(text)
        await self._put(text.encode("utf-8"))

    async def flush(self) -> None:
        return None  # every write is flushed (see _put)

    async def reply(self, message: dict[str, Any]) -> None:
        await self._put((json.dumps(message, separators=(",", ":")) + "\n").encode())

    def _account(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict) and "method" not in data and ("result" in data or "error" in data):
            key = json.dumps(data.get("id"))
            if self.pending.get(key, 0) > 1:
                self.pending[key] -= 1
            else:
                self.pending.pop(key, None)

    async def _put(self, data: bytes) -> None:
        def write() -> None:
            self._fout.write(data)
            self._fout.flush()

        async with self._write_lock:
            if self.closed:
                return
            try:
                await anyio.to_thread.run_sync(write)
            except (OSError, ValueError):
                # The client closed its end: nobody is listening any more.
                self.closed = True
                self.pending.clear()


@contextmanager
def _claim_stdio() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """The protocol's pipes on private descriptors; fd 0 reads /dev/null and fd 1 goes to stderr meanwhile,
    so nothing a handler (or a library) prints can corrupt the wire."""
    try:
        in_fd, out_fd = os.dup(0), os.dup(1)
    except OSError:
        yield sys.stdin.buffer, sys.stdout.buffer
        return
    null = os.open(os.devnull, os.O_RDONLY)
    saved_in, saved_out = os.dup(0), os.dup(1)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    fin = os.fdopen(in_fd, "rb")
    fout = os.fdopen(out_fd, "wb")
    try:
        yield fin, fout
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        with suppress(OSError, ValueError):
            fout.close()
        # ``fin`` stays open: the reader thread may be blocked in ``readline`` on it, and closing a
        # buffered file waits for that lock, so the process would hang on exit (after SIGTERM, while the
        # client keeps its end open). The descriptor goes away with the process.


async def serve_wire(server: MCPServer, wire: _Wire) -> None:
    """Serve MCP over ``wire`` until end of input, or until SIGTERM (after draining)."""
    lowlevel = mcp_internals.lowlevel_server(server)
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("SIGTERM: draining in-flight requests (up to %.0fs)", wire.grace)
                    await wire.drain()
                    tg.cancel_scope.cancel()
                    return

        async def run() -> None:
            sdk_stdin = cast(Any, wire)
            async with stdio_server(stdin=sdk_stdin, stdout=sdk_stdin) as (read_stream, write_stream):
                await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()

        tg.start_soon(watch_signals)
        tg.start_soon(run)
    log.info("stdio transport stopped: %s", wire.stats)


async def serve_stdio(server: MCPServer, max_line_bytes: int, grace: float = DEFAULT_GRACE_SECONDS) -> None:
    """Serve MCP over this process's stdin/stdout with the guards above."""
    with _claim_stdio() as (fin, fout):
        await serve_wire(server, _Wire(fin, fout, max_line_bytes, grace))
