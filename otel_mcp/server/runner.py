"""Run the server process: open the store, serve a transport, close cleanly."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from types import FrameType

import anyio
import uvicorn

from otel_mcp.config import Settings
from otel_mcp.server.app import build_http_app, build_server
from otel_mcp.server.context import RulesContext
from otel_mcp.server.limits import DEFAULT_GRACE_SECONDS, release_streams_after_posts, serve_stdio

log = logging.getLogger("otel_mcp.server")

SHUTDOWN_GRACE_SECONDS = DEFAULT_GRACE_SECONDS  # in-flight requests get this long to finish after SIGTERM


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
    from otel_mcp.telemetry import setup_telemetry

    telemetry = setup_telemetry(settings)  # first: the store's sqlite3 connections and the server get instrumented
    rules = RulesContext.open(settings, warm=True)
    server = build_server(rules)
    telemetry.attach(server, rules)  # otel-mcp://stats (always), /metrics when enabled
    freeze_startup_heap()
    tune_young_collections(settings.gc_young_threshold)
    # uvicorn handles SIGTERM itself (stop accepting, let in-flight requests finish) and then re-raises it
    # with the handler it found: with the default one the process died there, before the hooks below ran.
    # Ours unwinds to this function's cleanup instead, also when SIGTERM arrives before uvicorn is up.
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if settings.transport == "stdio":
            anyio.run(serve_stdio, server, settings.max_request_bytes, SHUTDOWN_GRACE_SECONDS)
        else:
            app = build_http_app(server, rules)
            print(f"otel-mcp: serving MCP on http://{settings.host}:{settings.port}/mcp", file=sys.stderr)
            http_server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=settings.host,
                    port=settings.port,
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
                )
            )
            release_streams_after_posts(http_server, SHUTDOWN_GRACE_SECONDS)
            http_server.run()
    except _Stop:
        log.info("SIGTERM: stopped serving")
    finally:
        signal.signal(signal.SIGTERM, _ignore_repeat)
        try:
            rules.close()  # the cache's popularity snapshot, then the store
        finally:
            telemetry.shutdown()  # last, so it flushes what the steps before it recorded
            signal.signal(signal.SIGTERM, previous)
