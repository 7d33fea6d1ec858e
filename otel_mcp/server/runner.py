"""Run the server process: open the store, serve a transport, close cleanly."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

import anyio
import uvicorn

from otel_mcp.config import Settings
from otel_mcp.server.app import build_http_app, build_server
from otel_mcp.server.context import RulesContext
from otel_mcp.server.limits import DEFAULT_GRACE_SECONDS, release_streams_after_posts, serve_stdio

log = logging.getLogger("otel_mcp.server")

SHUTDOWN_GRACE_SECONDS = DEFAULT_GRACE_SECONDS  # in-flight requests get this long to finish after SIGTERM
ShutdownHook = Callable[[], object]


def on_shutdown(rules: RulesContext, name: str, hook: ShutdownHook) -> None:
    """Run ``hook`` when the server stops (SIGTERM, SIGINT or end of input), after in-flight requests finish.

    Hooks run last-registered first (like ``atexit``), each on its own: one that raises is logged and the
    others still run. Register telemetry first so its flush runs last and carries the other hooks' spans.
    Name a hook ``cache`` to replace the default one (``composer.cache.close()``: popularity snapshot, L2
    closed) and ``telemetry`` to replace the default flush of the global OpenTelemetry providers.
    """
    rules.extras.setdefault("shutdown_hooks", []).append((name, hook))


def _flush_global_telemetry() -> None:
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        return
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            flush(timeout_millis=5000)


def run_shutdown_hooks(rules: RulesContext) -> list[str]:
    """Run the shutdown hooks; returns the names of those that failed."""
    hooks: list[tuple[str, ShutdownHook]] = list(rules.extras.get("shutdown_hooks", []))
    names = {name for name, _ in hooks}
    cache_close = getattr(rules.composer.cache, "close", None)
    if "telemetry" not in names:
        hooks.insert(0, ("telemetry", _flush_global_telemetry))
    if "cache" not in names and callable(cache_close):
        hooks.append(("cache", cache_close))
    failed: list[str] = []
    for name, hook in reversed(hooks):
        try:
            hook()
        except Exception as exc:
            failed.append(name)
            log.warning("shutdown hook %r failed: %s: %s", name, type(exc).__name__, exc)
    return failed


class _Stop(SystemExit):
    """Raised by our SIGTERM handler: unwinds to ``serve``'s cleanup, then exits with status 0."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(0)


def _ignore_repeat(signum: int, _frame: FrameType | None) -> None:
    log.info("signal %d while shutting down: already stopping", signum)


def serve(settings: Settings) -> None:
    from otel_mcp.telemetry import setup_telemetry

    telemetry = setup_telemetry(settings)  # first: the store's sqlite3 connections and the server get instrumented
    rules = RulesContext.open(settings, warm=True)
    server = build_server(rules)
    telemetry.attach(server, rules)  # otel-mcp://stats (always), /metrics when enabled
    on_shutdown(rules, "telemetry", telemetry.shutdown)
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
            run_shutdown_hooks(rules)
            rules.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
