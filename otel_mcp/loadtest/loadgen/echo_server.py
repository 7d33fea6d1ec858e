"""The reference: the raw MCP SDK serving a trivial ``echo`` tool over streamable HTTP.

Served exactly like otel-mcp (same SDK, same uvicorn settings, same transport
security), so the ratio otel-mcp / echo measured in one run cancels out the
machine's speed and load: the CI gate compares that ratio, never absolute times.
Run: ``python -m otel_mcp.loadtest.loadgen.echo_server --port N``.
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otel_mcp.config import Settings
from otel_mcp.server.app import transport_security


def build(port: int) -> object:
    server = MCPServer("echo-reference", log_level="WARNING")

    @server.tool()
    async def echo(text: str = "") -> dict[str, str]:
        """Return the text unchanged."""
        return {"text": text}

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    server.custom_route("/healthz", methods=["GET"])(healthz)
    security = transport_security(Settings(host="127.0.0.1"))
    return server.streamable_http_app(max_sessions=10000, transport_security=security, host="127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.port), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
