"""``otel-mcp stats``: live figures of a running HTTP server, read from its ``otel-mcp://stats`` resource."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from otel_mcp.remote import add_server_flags, read_server_json


def register_cli(sub: Any) -> None:
    stats = sub.add_parser("stats", help="show live request rates, latencies, cache and DB figures of a server")
    add_server_flags(stats)
    stats.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    stats.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
    stats.add_argument("--count", type=int, default=None, help="with --watch: stop after this many refreshes")
    stats.set_defaults(func=cmd_stats)


def fetch_stats(args: argparse.Namespace) -> dict[str, Any]:
    """The stats snapshot of the server that ``--url``/``--token`` (or the settings) name."""
    from otel_mcp.telemetry.stats import STATS_URI

    return read_server_json(args, STATS_URI)


def cmd_stats(args: argparse.Namespace) -> int:
    from otel_mcp.telemetry.stats import render_text

    shown = 0
    while True:
        data = fetch_stats(args)
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
