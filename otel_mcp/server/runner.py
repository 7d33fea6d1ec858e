"""Run the server process: open the store, serve a transport, close cleanly."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, NoReturn

import anyio
from sse_starlette.sse import AppStatus

from otel_mcp.config import Settings
from otel_mcp.server.app import build_http_app, build_server
from otel_mcp.server.auth import check_exposure
from otel_mcp.server.context import RulesContext
from otel_mcp.server.http_server import bounded_server
from otel_mcp.server.limits import serve_stdio

log = logging.getLogger("otel_mcp.server")

DRAIN_SECONDS = 2.0  # requests in flight get this long to finish after SIGTERM
FLUSH_SECONDS = 2.0  # then telemetry gets this long to leave
STOP_SLACK_SECONDS = 0.5  # for the local steps (database, performance log)
SHUTDOWN_BOUND_SECONDS = 5.0  # the sum, with room: documented (docs/operations.md) and tested


class _Stop(SystemExit):
    """Raised by our SIGTERM handler: unwinds to ``serve``'s cleanup, then exits with status 0."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(0)


def _ignore_repeat(signum: int, _frame: FrameType | None) -> None:
    log.info("signal %d while shutting down: already stopping", signum)


def freeze_startup_heap() -> None:
    """Move what startup built (modules, the warmed store, providers) out of the cyclic GC's reach.

    It lives as long as the process, yet every full collection walked it: ~67 ms each here, a stall of the
    event loop every few thousand requests (more often with telemetry on, whose queued spans and records
    age into the old generation). Frozen, a full collection walks only what requests left behind: ~1 ms,
    and the GC's share of a request halves (docs/performance.md). Garbage is collected first; objects
    that die later are still freed by reference counting, only reference cycles among them are kept.
    """
    gc.collect()
    gc.freeze()


def tune_young_collections(threshold: int) -> None:
    """Run the young generation's pass every ``threshold`` allocations instead of every 700 (0: unchanged).

    A pass walks the container objects alive at that moment: the in-flight requests' frames, dicts and
    messages. Most of them are freed by reference counting before the request ends, so fewer passes walk
    fewer of them, and the ones that survive to the older generations are fewer too. The cycles found are
    the same, a little later; a pass over at most ``threshold`` young objects stays well under a millisecond.
    """
    if threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(threshold, middle, old)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM (or end of input on stdio), then stop within ``SHUTDOWN_BOUND_SECONDS``.

    Stop order: streams end at once, requests in flight get ``DRAIN_SECONDS``, the database is closed,
    telemetry gets ``FLUSH_SECONDS`` to leave, and the process exits, whatever the telemetry backend does.
    """
    from otel_mcp.telemetry import setup_telemetry

    check_exposure(settings)  # before anything starts: a refused exposure leaves nothing behind
    telemetry = setup_telemetry(settings)  # first: the store's sqlite3 connections and the server get instrumented
    rules = RulesContext.open(settings, warm=True)
    server = build_server(rules)
    telemetry.attach(server, rules)  # otel-mcp://stats (always), /metrics when enabled
    freeze_startup_heap()
    tune_young_collections(settings.gc_young_threshold)
    # uvicorn handles SIGTERM itself (stop accepting, end streams, drain) and then re-raises it with the
    # handler it found: ours unwinds to this function's cleanup, also when SIGTERM arrives before uvicorn is up.
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if settings.transport == "stdio":
            anyio.run(serve_stdio, server, settings.max_request_bytes, DRAIN_SECONDS)
        else:
            # sse-starlette would end every SSE response on SIGTERM, the answers of POSTs in flight too;
            # BoundedServer ends only the streams and lets those POSTs drain.
            AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
            app = build_http_app(server, rules)
            print(f"otel-mcp: serving MCP on http://{settings.host}:{settings.port}/mcp", file=sys.stderr)
            bounded_server(app, settings.host, settings.port, settings.request_read_timeout_s, DRAIN_SECONDS).run()
    except _Stop:
        log.info("SIGTERM: stopped serving")
    finally:
        signal.signal(signal.SIGTERM, _ignore_repeat)
        try:
            rules.close()  # the cache's popularity snapshot, then the store: nothing of the rules is lost
        finally:
            stop_telemetry(telemetry, FLUSH_SECONDS)  # last, so it flushes what the steps before it recorded
    exit_now(0)


def stop_telemetry(telemetry: Any, seconds: float) -> None:
    """Flush and shut telemetry down for at most ``seconds``; what could not leave is dropped (and counted).

    ``Telemetry.shutdown`` bounds its wait and says once in the log when the flush did not finish.
    """
    worker = threading.Thread(target=telemetry.shutdown, kwargs={"timeout": seconds}, name="otel-mcp-stop",
                              daemon=True)
    worker.start()
    worker.join(seconds + STOP_SLACK_SECONDS)


def exit_now(code: int) -> NoReturn:
    """Exit without Python's exit hooks, once our state is saved and the logs flushed.

    An export to a backend that does not answer cannot be interrupted: the OpenTelemetry SDK's own exit hooks
    (``shutdown_on_exit``) and its exporter threads would hold the process for their full timeouts and retries
    (tens of seconds), past the 10 s after which Docker sends SIGKILL. Everything of ours is closed by now.
    """
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
