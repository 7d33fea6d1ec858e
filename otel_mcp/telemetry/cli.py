"""``otel-mcp stats``: live figures of a running HTTP server, read from its ``otel-mcp://stats`` resource."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000/mcp"


def register_cli(sub: Any) -> None:
    stats = sub.add_parser("stats", help="show live request rates, latencies, cache and DB figures of a server")
    stats.add_argument("--url", default=DEFAULT_URL, help=f"the server's MCP endpoint (default {DEFAULT_URL})")
    stats.add_argument("--token", default=None, help="bearer token, if the server requires one")
    stats.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    stats.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
    stats.add_argument("--count", type=int, default=None, help="with --watch: stop after this many refreshes")
    stats.set_defaults(func=cmd_stats)


async def fetch_stats(url: str, token: str | None = None) -> dict[str, Any]:
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx.AsyncClient(headers=headers, timeout=30) as http, Client(
        streamable_http_client(url, http_client=http)
    ) as client:
        result = await client.read_resource("otel-mcp://stats")
    text = "".join(getattr(c, "text", "") for c in result.contents)
    data: dict[str, Any] = json.loads(text)
    return data


def cmd_stats(args: argparse.Namespace) -> int:
    import anyio

    from otel_mcp.telemetry.stats import render_text

    shown = 0
    while True:
        try:
            data = anyio.run(fetch_stats, args.url, args.token)
        except Exception as exc:
            print(f"otel-mcp stats: cannot read {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            if args.watch:
                print("\033[2J\033[H", end="")
            print(render_text(data))
        shown += 1
        if not args.watch or (args.count is not None and shown >= args.count):
            return 0
        time.sleep(args.watch)
