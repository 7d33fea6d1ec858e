"""The ``otel-mcp`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from otel_mcp import __version__
from otel_mcp.config import DEMO_DB, Settings, setting_help
from otel_mcp.errors import ConfigError, InvalidRule, RuleError
from otel_mcp.remote import RemoteError
from otel_mcp.store.schema import SchemaTooNew

SERVE_FLAGS = ("transport", "host", "port", "db", "cache_dir", "files_root", "read_only", "log_level",
               "auth_token_file", "allow_remote_without_auth", "public_hosts", "allowed_origins")
BOOLEAN_FLAGS = frozenset({"read_only", "allow_remote_without_auth"})


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    helps = setting_help()
    for name in names:
        flag = "--" + name.replace("_", "-")
        if name in BOOLEAN_FLAGS:
            parser.add_argument(flag, action="store_true", default=None, help=helps[name])
        elif name == "transport":
            parser.add_argument(flag, choices=["stdio", "http"], default=None, help=helps[name])
        else:
            parser.add_argument(flag, default=None, help=helps[name])


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load({k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__})


def cmd_serve(args: argparse.Namespace) -> int:
    from otel_mcp.server.runner import serve

    serve(_settings(args))
    return 0


def _rule_folder(path: str, *, create: bool) -> Path:
    """The folder to import from or export to, or a ``RuleError`` naming it (missing, name too long ...)."""
    from otel_mcp.interchange import file_error

    folder = Path(path).resolve()
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            raise InvalidRule(f"{str(folder)!r} does not exist or is not a folder")
    except OSError as exc:
        raise file_error("use folder", str(folder), exc) from None
    return folder


def cmd_import(args: argparse.Namespace) -> int:
    from otel_mcp.interchange import import_directory
    from otel_mcp.store.backends import open_store, redact

    settings = _settings(args)
    folder = _rule_folder(args.directory, create=False)
    store = open_store(settings.db)
    results = import_directory(store, folder, ".", args.format)
    for r in results:
        line = f"{r.status:9} {r.path}" + (f"  ({r.error})" if r.error else f"  -> {r.rule_id}@{r.version}")
        print(line)
    errors = sum(r.status == "error" for r in results)
    print(f"{len(results) - errors} imported, {errors} failed, into {redact(settings.db)}")
    return 1 if errors else 0


def cmd_export(args: argparse.Namespace) -> int:
    from otel_mcp.interchange import export_directory
    from otel_mcp.store.backends import open_store

    settings = _settings(args)
    folder = _rule_folder(args.directory, create=True)
    results = export_directory(open_store(settings.db), folder, ".", args.format)
    print(f"{len(results)} file(s) written to {folder}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from otel_mcp.store.backends import database_setting
    from otel_mcp.store.transfer import copy_store

    try:
        source, target = database_setting(args.source), database_setting(args.target)
    except ValueError as exc:
        raise ConfigError(f"--from/--to: {exc}") from None
    print(copy_store(source, target).summary())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from otel_mcp.demo import run_demo

    return run_demo(_settings(args), with_stack=not args.no_stack, duration=args.duration)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-mcp", description="Rules MCP server, observed with OpenTelemetry.")
    parser.add_argument("--version", action="version", version=f"otel-mcp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    _add_setting_flags(serve, SERVE_FLAGS)
    serve.set_defaults(func=cmd_serve)

    imp = sub.add_parser("import", help="import rule files from a folder")
    imp.add_argument("directory")
    imp.add_argument("--format", default="auto", choices=["auto", "cursor", "claude", "copilot", "agents"])
    _add_setting_flags(imp, ("db",))
    imp.set_defaults(func=cmd_import)

    exp = sub.add_parser("export", help="export every rule as files into a folder")
    exp.add_argument("directory")
    exp.add_argument("--format", default="cursor", choices=["cursor", "claude", "copilot", "agents"])
    _add_setting_flags(exp, ("db",))
    exp.set_defaults(func=cmd_export)

    mig = sub.add_parser("migrate", help="copy every rule with its history into another, empty database",
                         description="Copy every rule with its whole history from one rules database to another "
                         "(e.g. SQLite to PostgreSQL), then check that the copy reads back the same.")
    mig.add_argument("--from", dest="source", required=True, metavar="DB",
                     help="the source: a SQLite file, sqlite:///path or postgresql://... (read only)")
    mig.add_argument("--to", dest="target", required=True, metavar="DB",
                     help="the empty target: a SQLite file, sqlite:///path or postgresql://user:password@host/db")
    mig.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="start the telemetry stack and the HTTP server, run a demo workload")
    _add_setting_flags(demo, ("host", "port", "cache_dir"))
    demo.add_argument("--db", default=str(DEMO_DB),
                      help=f"SQLite database file (default {DEMO_DB}: the demo's own, apart from your rules)")
    demo.add_argument("--no-stack", action="store_true", help="skip the Collector/Jaeger/Prometheus stack")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(func=cmd_demo)

    for module in ("otel_mcp.stack", "otel_mcp.stack.traces", "otel_mcp.cache.cli", "otel_mcp.telemetry.cli",
                   "otel_mcp.loadtest.cli"):
        register = _optional_register(module)
        if register is not None:
            register(sub)
    return parser


def _optional_register(module: str) -> Callable[[Any], None] | None:
    """Subcommand groups that live with their feature (stack, cache, stats, perf)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    register: Callable[[Any], None] | None = getattr(mod, "register_cli", None)
    return register


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # One INFO line per HTTP request (clients) or per refused tool call (the SDK's server: any client could
    # fill the log with them; tool errors are counted in otel_mcp.tool.errors instead) drowns what matters.
    for chatty in ("httpx", "httpx2", "mcp.client", "mcp.server.mcpserver.server"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"otel-mcp: configuration error: {exc}", file=sys.stderr)
        return 2
    except (RuleError, SchemaTooNew, RemoteError) as exc:
        print(f"otel-mcp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left (``otel-mcp stats | head``): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
