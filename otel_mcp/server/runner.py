"""Run the server process: open the store, serve a transport, close cleanly."""

from __future__ import annotations

import logging
import sys

import anyio
import uvicorn

from otel_mcp.config import Settings
from otel_mcp.server.app import build_http_app, build_server
from otel_mcp.server.context import RulesContext

log = logging.getLogger("otel_mcp.server")


def serve(settings: Settings) -> None:
    rules = RulesContext.open(settings)
    server = build_server(rules)
    try:
        if settings.transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            app = build_http_app(server, rules)
            print(f"otel-mcp: serving MCP on http://{settings.host}:{settings.port}/mcp", file=sys.stderr)
            uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    finally:
        rules.close()
