"""The load engine: real SDK clients (streamable HTTP sessions and stdio processes), open and closed loop.

- ``SessionPool`` opens ``http_sessions`` ``mcp.Client`` sessions to a URL and
  ``stdio_procs`` clients that each launch their own ``otel-mcp serve`` (stdio)
  process on the same database. A request borrows an idle session.
- ``open_loop``: requests are *due* at a fixed rate (``t0 + i / rate``, or
  Poisson arrivals); latency is measured from the due time, not from when a
  session became free, so a slow server cannot hide its queueing (no
  coordinated omission). Bounded by ``duration`` and ``max_requests``; what is
  still in flight ``drain_s`` after the end is cancelled and counted as
  ``timeout``.
- ``closed_loop``: ``concurrency`` clients each send, wait, record, repeat.
- HTTP sessions talk through ``load_http_client()``: connections idle for
  ``KEEPALIVE_EXPIRY_S`` are not reused (the servers drop them at 5 s), and a
  transport error on a POST fails that one call (``transport:<Error>``)
  instead of tearing the whole run down (see ``ContainedTransport``).

An operation is an ``async (client, rng) -> None`` that raises ``OpError(kind)``
on a failure it recognises; any other exception is counted by its type name.
Every run is deterministic for a seed (operation choice and arguments; timing
is the machine's).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from otel_mcp import mcp_internals
from otel_mcp.loadtest.loadgen.hist import LatencyRecorder, cdf, summarize

Op = Callable[[Client, random.Random], Awaitable[None]]


def _client_timeout() -> httpx2.Timeout:
    """The MCP SDK client's own timeouts (a request, and a read on the SSE stream)."""
    timeout, sse_read = mcp_internals.http_client_timeouts()
    return httpx2.Timeout(timeout, read=sse_read)
Picker = Callable[[random.Random], tuple[str, Op]]
HttpClientFactory = Callable[[], httpx2.AsyncClient]


class OpError(Exception):
    """A failed operation, by kind (``conflict``, ``tool_error``, ``stale_read``...)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def classify_tool_error(text: str) -> str:
    lowered = text.lower()
    if "version conflict" in lowered:
        return "conflict"
    if "not found" in lowered or "does not exist" in lowered:
        return "not_found"
    if "busy" in lowered or "locked" in lowered:
        return "busy"
    return "tool_error"


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, OpError):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, MCPError) and isinstance(exc.data, dict) and TRANSPORT_ERROR_KEY in exc.data:
        return f"transport:{exc.data[TRANSPORT_ERROR_KEY]}"  # a failed POST, see ContainedTransport
    if isinstance(exc, MCPError):
        return f"mcp_error:{getattr(exc.error, 'code', '?')}"
    if isinstance(exc, httpx2.HTTPError | OSError | anyio.BrokenResourceError | anyio.ClosedResourceError):
        return f"transport:{type(exc).__name__}"
    return f"exception:{type(exc).__name__}"


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool; an ``isError`` result raises ``OpError`` with the classified kind."""
    result = await client.call_tool(tool, args)
    if getattr(result, "is_error", False):
        text = " ".join(getattr(c, "text", "") for c in getattr(result, "content", []))
        raise OpError(classify_tool_error(text), text[:300])
    structured = getattr(result, "structured_content", None)
    return structured if isinstance(structured, dict) else {}


# uvicorn, which serves otel-mcp and the echo reference alike, closes a keep-alive connection after 5 s
# idle (``timeout_keep_alive``), and httpx2 reuses one for up to 5 s (``Limits.keepalive_expiry``). A
# connection idle for ~5 s can then be picked from the pool just as the server closes it, and the POST
# fails ("Server disconnected without sending a response" / a reset). In the reference scenario every
# arm's sessions sit idle while the two other arms run, which on a loaded machine is ~5 s. Expiring idle
# connections on our side well before the server does removes that race; within a round connections
# are reused as before.
KEEPALIVE_EXPIRY_S = 2.0
# A transport error on a POST comes back to the caller as this JSON-RPC error, naming the httpx2
# exception in ``data[TRANSPORT_ERROR_KEY]`` (``error_kind`` counts it as ``transport:<name>``).
TRANSPORT_ERROR_CODE = -32090
TRANSPORT_ERROR_KEY = "harness_transport_error"
# Connect-time messages are left alone: ``server/discover`` answered by an error makes the SDK fall back
# to the legacy handshake (mcp.client._probe.negotiate_auto), which would silently change what is measured.
HANDSHAKE_METHODS = frozenset({"server/discover", "initialize"})


def _jsonrpc_head(body: bytes) -> tuple[Any, Any]:
    """The ``method`` and ``id`` of a JSON-RPC message body (``None`` where absent or unparseable)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None, None
    return (message.get("method"), message.get("id")) if isinstance(message, dict) else (None, None)


class ContainedTransport(httpx2.AsyncBaseTransport):
    """Turns a transport error on an MCP POST into a JSON-RPC error for that one request.

    Works around the SDK (mcp 2.3.0, ``mcp/client/streamable_http.py``): ``StreamableHTTPTransport.post_writer``
    runs each request's POST as ``tg.start_soon(self._run_request_post, ...)`` in the task group of
    ``streamable_http_client``, and neither ``_run_request_post`` nor ``_handle_post_request`` (the
    ``client.send`` in ``stream_within_origin``) nor ``_handle_json_response`` (its ``response.aread()``
    only catches ``httpx2.StreamError``/``ValidationError``) handles an ``httpx2.TransportError``. One
    failed POST therefore crashes that task group: its cancel scope cancels the task that entered the
    ``Client`` (here the scenario's main task, inside whose scope every session and every load loop
    runs), the call in flight gets a ``CancelledError`` instead of an error, and the httpx2 exception
    resurfaces as an ``ExceptionGroup`` from ``Client.__aexit__`` when the pool closes. (GET streams and
    the closing DELETE catch their errors; SSE POST responses do too.)

    Here a POST that raises, or whose JSON body cannot be read, is answered with a synthetic HTTP 502
    carrying a JSON-RPC error, which the SDK hands to the caller as ``MCPError``: the harness counts
    ``transport:<name>`` for that request and the run goes on. JSON response bodies are read here, in
    the same try, which costs nothing (the SDK reads them whole anyway); SSE bodies pass through.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return await self.inner.handle_async_request(request)
        method, request_id = _jsonrpc_head(request.content)
        if method in HANDSHAKE_METHODS:
            return await self.inner.handle_async_request(request)
        try:
            response = await self.inner.handle_async_request(request)
            if not response.headers.get("content-type", "").lower().startswith("application/json"):
                return response
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx2.TransportError as exc:
            name = type(exc).__name__
            error = {"code": TRANSPORT_ERROR_CODE, "message": f"{name}: {exc}", "data": {TRANSPORT_ERROR_KEY: name}}
            return httpx2.Response(502, json={"jsonrpc": "2.0", "id": request_id, "error": error}, request=request)
        extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
        return httpx2.Response(response.status_code, headers=response.headers, content=body,
                               extensions=extensions, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def http_transport() -> httpx2.AsyncHTTPTransport:
    """httpx2's default transport, with idle connections expired before the server drops them."""
    return httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20,
                                                          keepalive_expiry=KEEPALIVE_EXPIRY_S))


def load_http_client(inner: httpx2.AsyncBaseTransport | None = None) -> httpx2.AsyncClient:
    """The HTTP client of one load session: the SDK's default timeouts, ``ContainedTransport`` over ``inner``."""
    return httpx2.AsyncClient(transport=ContainedTransport(inner or http_transport()),
                              timeout=_client_timeout())


def load_client(url: str, stack: AsyncExitStack, factory: HttpClientFactory | None = None) -> Client:
    """An MCP client over ``load_http_client()`` (or ``factory``'s), whose HTTP client ``stack`` closes after it."""
    http = (factory or load_http_client)()
    stack.push_async_callback(http.aclose)  # after the session's own exit (LIFO)
    return Client(streamable_http_client(url, http_client=http), cache=None)


@dataclass
class PoolConfig:
    url: str | None = None
    # Several servers (replicas): the HTTP sessions go to them in turn, as a round-robin load balancer sends them.
    urls: Sequence[str] = ()
    http_sessions: int = 8
    stdio_procs: int = 0
    stdio_db: Path | None = None
    stdio_env: dict[str, str] = field(default_factory=dict)
    # Builds each HTTP session's client (default ``load_http_client``); keep ``ContainedTransport`` outermost.
    http_client_factory: HttpClientFactory | None = None
    open_concurrency: int = 16


class SessionPool:
    """Connected clients; ``borrow()`` hands out an idle one (FIFO), waiting if none is idle."""

    def __init__(self, clients: list[Client], labels: list[str], stdio_pids: list[int]) -> None:
        self.clients = clients
        self.labels = labels
        self.stdio_pids = stdio_pids
        self._idle: list[int] = list(range(len(clients)))
        self._available = anyio.Semaphore(len(clients))

    def __len__(self) -> int:
        return len(self.clients)

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[Client]:
        await self._available.acquire()
        index = self._idle.pop(0)
        try:
            yield self.clients[index]
        finally:
            self._idle.append(index)
            self._available.release()


def stdio_params(db: Path, env: dict[str, str] | None = None) -> StdioServerParameters:
    import os

    full_env = dict(os.environ)
    full_env.update({"OTEL_MCP_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    return StdioServerParameters(command=sys.executable, args=["-m", "otel_mcp.cli", "serve", "--db", str(db)],
                                 env=full_env)


@contextlib.asynccontextmanager
async def open_pool(config: PoolConfig) -> AsyncIterator[SessionPool]:
    """Open every session (bounded parallelism), yield the pool, close them all."""
    async with AsyncExitStack() as stack:
        clients: list[Client | None] = [None] * (config.http_sessions + config.stdio_procs)
        labels = [f"http-{i}" for i in range(config.http_sessions)] + [
            f"stdio-{i}" for i in range(config.stdio_procs)]
        limiter = anyio.Semaphore(config.open_concurrency)
        before = {p.pid for p in psutil.Process().children(recursive=True)}

        def make(i: int) -> Client:
            if i < config.http_sessions:
                url = config.urls[i % len(config.urls)] if config.urls else config.url
                assert url is not None
                return load_client(url, stack, config.http_client_factory)
            assert config.stdio_db is not None
            return Client(stdio_params(config.stdio_db, config.stdio_env), cache=None)

        async def connect(i: int) -> None:
            async with limiter:
                client = make(i)
                clients[i] = await stack.enter_async_context(client)

        # Sessions are entered one by one on the exit stack (anyio cancel scopes must nest),
        # so "bounded parallelism" is sequential here; opening is not measured.
        for i in range(len(clients)):
            await connect(i)
        after = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        stdio_pids = [p.pid for p in after if "serve" in " ".join(p.cmdline()) and "--transport" not in p.cmdline()]
        yield SessionPool([c for c in clients if c is not None], labels, stdio_pids)


@dataclass
class Progress:
    """A live line on stderr (``\\r``-updated on a terminal, a line every few seconds otherwise)."""

    label: str
    duration: float
    recorder: LatencyRecorder
    sent: int = 0
    enabled: bool = True
    _last_ok: int = 0
    _last_t: float = 0.0

    async def run(self, t0: float) -> None:
        tty = sys.stderr.isatty()
        period = 0.5 if tty else 5.0
        self._last_t = t0
        while True:
            await anyio.sleep(period)
            if not self.enabled:
                continue
            now = time.monotonic()
            ok = self.recorder.ok
            rps = (ok - self._last_ok) / max(1e-6, now - self._last_t)
            self._last_ok, self._last_t = ok, now
            p99 = self.recorder.total.get_value_at_percentile(99) / 1000 if ok else 0.0
            line = (f"[{self.label}] {min(now - t0, self.duration):5.1f}/{self.duration:.0f}s sent {self.sent} "
                    f"ok {ok} err {self.recorder.error_count} {rps:7.1f} req/s p99 {p99:.1f} ms")
            sys.stderr.write(("\r" + line.ljust(100)) if tty else line + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\n")


async def _timed(op: Op, client: Client, rng: random.Random, timeout: float) -> BaseException | None:
    try:
        with anyio.fail_after(timeout):
            await op(client, rng)
    except Exception as exc:  # counted by kind; the run goes on
        return exc
    return None


def _result(mode: str, recorder: LatencyRecorder, sent: int, elapsed: float, by_op: dict[str, LatencyRecorder],
            extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": mode,
        **extra,
        "sent": sent,
        "ok": recorder.ok,
        "errors": dict(sorted(recorder.errors.items())),
        "error_count": recorder.error_count,
        "elapsed_s": round(elapsed, 3),
        "throughput_rps": round(recorder.ok / elapsed, 2) if elapsed > 0 else 0.0,
        "latency": summarize(recorder.total),
        "cdf": cdf(recorder.total),
        "timeline": recorder.timeline(),
        "by_op": {name: {"ok": r.ok, "errors": r.errors, **summarize(r.total)} for name, r in sorted(by_op.items())},
    }


async def open_loop(pool: SessionPool, picker: Picker, *, rate: float, duration: float, seed: int,
                    max_requests: int | None = None, poisson: bool = False, timeout: float = 30.0,
                    drain_s: float = 10.0, label: str = "open-loop", window_s: float = 1.0,
                    progress: bool = True) -> dict[str, Any]:
    """Fixed arrival rate; latency from each request's due time."""
    rng = random.Random(seed)
    arrival_rng = random.Random(seed + 1)
    total = int(rate * duration)
    if max_requests is not None:
        total = min(total, max_requests)
    recorder = LatencyRecorder(window_s)
    by_op: dict[str, LatencyRecorder] = {}
    prog = Progress(label, duration, recorder, enabled=progress)
    t0 = time.monotonic()

    async def one(name: str, op: Op, due: float, op_rng: random.Random) -> None:
        async with pool.borrow() as client:
            failure = await _timed(op, client, op_rng, timeout)
        done = time.monotonic()
        rec = by_op.setdefault(name, LatencyRecorder(window_s))
        if failure is None:
            recorder.record(due - t0, done - due)
            rec.record(due - t0, done - due)
        else:
            recorder.error(error_kind(failure))
            rec.error(error_kind(failure))

    due = t0
    async with anyio.create_task_group() as outer:
        outer.start_soon(prog.run, t0)
        with anyio.move_on_after(duration + drain_s):
            async with anyio.create_task_group() as tg:
                for _ in range(total):
                    due += arrival_rng.expovariate(rate) if poisson else 1.0 / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await anyio.sleep(delay)
                    name, op = picker(rng)
                    tg.start_soon(one, name, op, due, random.Random(rng.random()))
                    prog.sent += 1
        outer.cancel_scope.cancel()
    prog.done()
    unfinished = prog.sent - recorder.ok - recorder.error_count
    if unfinished > 0:
        recorder.errors["timeout"] = recorder.errors.get("timeout", 0) + unfinished
    elapsed = max(duration, time.monotonic() - t0) if total else 0.0
    elapsed = min(elapsed, time.monotonic() - t0)
    return _result("open", recorder, prog.sent, elapsed, by_op,
                   {"offered_rps": rate, "duration_s": duration, "sessions": len(pool)})


async def closed_loop(pool: SessionPool, picker: Picker, *, concurrency: int, duration: float, seed: int,
                      max_requests: int | None = None, timeout: float = 30.0, label: str = "closed-loop",
                      window_s: float = 1.0, progress: bool = True) -> dict[str, Any]:
    """``concurrency`` clients in a send-wait loop; latency from each send."""
    recorder = LatencyRecorder(window_s)
    by_op: dict[str, LatencyRecorder] = {}
    prog = Progress(label, duration, recorder, enabled=progress)
    budget = [max_requests if max_requests is not None else math.inf]
    t0 = time.monotonic()
    deadline = t0 + duration

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with pool.borrow() as client:
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                name, op = picker(rng)
                start = time.monotonic()
                prog.sent += 1
                failure = await _timed(op, client, rng, timeout)
                end = time.monotonic()
                rec = by_op.setdefault(name, LatencyRecorder(window_s))
                if failure is None:
                    recorder.record(start - t0, end - start)
                    rec.record(start - t0, end - start)
                else:
                    recorder.error(error_kind(failure))
                    rec.error(error_kind(failure))

    async with anyio.create_task_group() as outer:
        outer.start_soon(prog.run, t0)
        async with anyio.create_task_group() as tg:
            for i in range(concurrency):
                tg.start_soon(worker, i)
        outer.cancel_scope.cancel()
    prog.done()
    elapsed = time.monotonic() - t0
    return _result("closed", recorder, prog.sent, elapsed, by_op,
                   {"concurrency": concurrency, "duration_s": duration, "sessions": len(pool)})


def pick_weighted(ops: Sequence[tuple[str, float, Op]]) -> Picker:
    """A picker choosing among named operations by weight."""
    names = [n for n, _, _ in ops]
    weights = [w for _, w, _ in ops]
    funcs = {n: f for n, _, f in ops}

    def picker(rng: random.Random) -> tuple[str, Op]:
        name = rng.choices(names, weights)[0]
        return name, funcs[name]

    return picker
