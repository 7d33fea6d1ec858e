"""``otel-mcp cache stats|clear|warm``: the cache from the command line.

Each subcommand takes ``--db`` and ``--cache-dir``; unset, they come from
``otel_mcp.config.Settings`` (``OTEL_MCP_DB``, ``OTEL_MCP_CACHE_DIR``, then defaults).
Output is JSON on stdout.
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
from otel_mcp.store.sqlite import RuleStore


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
        parser.add_argument("--db", default=None, help="SQLite database file")
        parser.add_argument("--cache-dir", default=None, help="disk cache directory")
        if name == "warm":
            parser.add_argument("--limit", type=int, default=DEFAULT_WARM_LIMIT, help="requests to warm")
        parser.set_defaults(func=func)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load({"db": args.db, "cache_dir": args.cache_dir})


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def cmd_stats(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with TieredCache(settings.cache_dir) as cache:
        stats = cache.stats().to_dict()
        # A fresh process has no traffic of its own: show what the disk holds and who is hot.
        stats["popular"] = [{"request": k, "score": round(s, 3)} for k, s in cache.popularity.top(10)]
        stats["directory"] = str(settings.cache_dir)
        _print(stats)
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with TieredCache(settings.cache_dir) as cache:
        _print({"removed": cache.clear(), "directory": str(settings.cache_dir)})
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = RuleStore(settings.db, read_only=settings.read_only)
    try:
        with TieredCache(settings.cache_dir) as cache:
            options = ComposeOptions.from_settings(settings)
            service = ComposeService(store, cache, options)
            progress = warm(service, cache, limit=args.limit)
            _print(progress.to_dict())
            return 0 if progress.failed == 0 else 1
    finally:
        store.close()
