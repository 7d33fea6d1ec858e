"""``otel-mcp cache stats|clear|warm``: the cache from the command line.

Each subcommand takes ``--db`` and ``--cache-dir``; unset, they come from
``otel_mcp.config.Settings`` (``OTEL_MCP_DB``, ``OTEL_MCP_CACHE_DIR``, then defaults).
Output is JSON on stdout. Hit and miss counters live in each server process, so ``cache stats --url``
reads a running server's; without ``--url`` it describes the disk cache itself (entries, bytes, hot
requests), and its ``source`` says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from otel_mcp.cache.core import TieredCache
from otel_mcp.cache.warm import DEFAULT_WARM_LIMIT, warm
from otel_mcp.compose.engine import ComposeOptions
from otel_mcp.compose.service import ComposeService
from otel_mcp.config import Settings
from otel_mcp.remote import add_server_flags, mcp_endpoint
from otel_mcp.store.backends import open_store


def register_cli(subparsers: Any) -> None:
    """Add the ``cache`` command group to the ``otel-mcp`` parser's subparsers."""
    cache = subparsers.add_parser("cache", help="composition cache: stats, clear, warm")
    sub = cache.add_subparsers(dest="cache_command", required=True)
    for name, func, text in (
        ("stats", cmd_stats, "hit/miss counters, sizes and the popularity snapshot"),
        ("clear", cmd_clear, "empty the disk cache (all processes sharing it)"),
        ("warm", cmd_warm, "compose the hottest requests into the disk cache now"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--db", default=None, help="rules database (SQLite file or postgresql:// URL)")
        parser.add_argument("--cache-dir", default=None, help="disk cache directory")
        if name == "stats":
            add_server_flags(parser, url_help="read the counters of the server at this base URL or MCP endpoint "
                                              "(default: describe the disk cache)")
        if name == "warm":
            parser.add_argument("--limit", type=int, default=DEFAULT_WARM_LIMIT, help="requests to warm")
        parser.set_defaults(func=func)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load({"db": args.db, "cache_dir": args.cache_dir})


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def cmd_stats(args: argparse.Namespace) -> int:
    if args.url is not None:
        from otel_mcp.telemetry.cli import fetch_stats

        _print({"source": f"the server at {mcp_endpoint(args.url)} (its own counters since it started)",
                **fetch_stats(args)["cache"]})
        return 0
    settings = _settings(args)
    with TieredCache(settings.cache_dir) as cache:
        disk = cache.stats()
        # This process serves no traffic: its hit/miss counters would be zeros, so only the disk is shown.
        _print({"source": f"the disk cache in {settings.cache_dir} (hit and miss counters are kept by each server: "
                          "add --url to read a running server's)",
                "directory": str(settings.cache_dir), "l2_enabled": disk.l2_enabled, "l2_entries": disk.l2_entries,
                "l2_bytes": disk.l2_bytes, "errors": disk.errors, "popularity_tracked": disk.popularity_tracked,
                "popular": [{"request": k, "score": round(s, 3)} for k, s in cache.popularity.top(10)]})
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with TieredCache(settings.cache_dir) as cache:
        _print({"removed": cache.clear(), "directory": str(settings.cache_dir)})
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_store(settings.db, read_only=settings.read_only)
    try:
        with TieredCache(settings.cache_dir) as cache:
            options = ComposeOptions.from_settings(settings)
            service = ComposeService(store, cache, options)
            progress = warm(service, cache, limit=args.limit)
            _print(progress.to_dict())
            return 0 if progress.failed == 0 else 1
    finally:
        store.close()
