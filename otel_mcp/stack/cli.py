"""``otel-mcp stack install|up|down|status``: argparse wiring for the stack commands.

Each subcommand sets ``func`` on the namespace: a callable taking the parsed
``argparse.Namespace`` and returning the process exit code.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from otel_mcp.stack import _settings as s
from otel_mcp.stack.installer import InstallError, install
from otel_mcp.stack.supervisor import StackError, down, format_status, status, up


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``stack`` command and its subcommands to an argparse ``subparsers`` object.

    :param subparsers: the object returned by ``ArgumentParser.add_subparsers()``
    :returns: the ``stack`` parser
    """
    stack = subparsers.add_parser(
        "stack",
        help="run the observability stack (Collector, Jaeger, Prometheus) locally",
        description="Build, start, stop and inspect the local OpenTelemetry Collector, Jaeger v2 "
        "and Prometheus that receive otel-mcp's telemetry.",
    )
    commands = stack.add_subparsers(dest="stack_command", metavar="{install,up,down,status}")
    commands.required = True

    def with_state_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=None,
                       help=f"logs, data and pid files (default {s.default_state_dir()})")

    p_install = commands.add_parser("install", help="build/install the binaries that are missing")
    p_install.add_argument("--quiet", action="store_true", help="do not stream build output")
    p_install.add_argument("--force", action="store_true", help="rebuild even if cached")
    p_install.add_argument("--scale-out", action="store_true",
                           help="also build the agent/gateway tiers' Collector (docs/scale-out.md)")
    p_install.set_defaults(func=_cmd_install)

    p_up = commands.add_parser("up", help="start the stack and wait until it is healthy")
    with_state_dir(p_up)
    p_up.add_argument("--foreground", action="store_true",
                      help="stay attached; Ctrl-C stops every component")
    p_up.add_argument("--test-overlay", action="store_true",
                      help="add collector/otelcol-config.test.yaml (short intervals)")
    p_up.add_argument("--collector-config", type=Path, action="append", default=[], metavar="PATH",
                      help="extra Collector config merged after ours (repeatable)")
    p_up.add_argument("--persistent-traces", action="store_true",
                      help="keep traces across restarts (Jaeger badger store in the state dir)")
    p_up.add_argument("--timeout", type=float, default=s.HEALTH_TIMEOUT,
                      help="seconds each component may take to become healthy")
    p_up.set_defaults(func=_cmd_up)

    p_down = commands.add_parser("down", help="stop the stack")
    with_state_dir(p_down)
    p_down.set_defaults(func=_cmd_down)

    p_status = commands.add_parser("status", help="show each component's state and URLs")
    with_state_dir(p_status)
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    p_status.set_defaults(func=_cmd_status)
    return stack  # type: ignore[no-any-return]


def _cmd_install(args: argparse.Namespace) -> int:
    try:
        binaries = install(progress=not args.quiet, force=args.force, scale_out=args.scale_out)
    except (InstallError, FileNotFoundError) as exc:
        print(f"otel-mcp stack install: {exc}", file=sys.stderr)
        return 1
    paths = vars(binaries)
    width = max(map(len, paths))
    for name, path in paths.items():
        print(f"{name:<{width}} {path}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    if args.foreground:
        return _run_foreground(args)
    try:
        up(args.state_dir, test_overlay=args.test_overlay, persistent_traces=args.persistent_traces,
           collector_overlays=args.collector_config, timeout=args.timeout)
    except (StackError, InstallError, FileNotFoundError) as exc:
        print(f"otel-mcp stack up: {exc}", file=sys.stderr)
        return 1
    print(f"stack running in the background; stop it with: otel-mcp stack down"
          f"{'' if args.state_dir is None else f' --state-dir {args.state_dir}'}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_foreground(args: argparse.Namespace) -> int:
    """Start the stack, watch it, and stop all of it on Ctrl-C, SIGTERM or a crash."""
    # SIGTERM behaves like Ctrl-C from here on, even in the middle of up(); the children
    # also get SIGTERM from the kernel if this process dies (die_with_parent).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        st = up(args.state_dir, test_overlay=args.test_overlay, persistent_traces=args.persistent_traces,
                collector_overlays=args.collector_config, timeout=args.timeout, die_with_parent=True)
        print("stack running in the foreground; Ctrl-C stops it", flush=True)
        while True:
            time.sleep(1.0)
            crashed = [c.name for c in status(st.state_dir).components.values() if not c.running]
            if crashed:
                print(f"otel-mcp stack: {', '.join(crashed)} exited; stopping", file=sys.stderr)
                code = 1
                break
    except KeyboardInterrupt:
        pass
    except (StackError, InstallError, FileNotFoundError) as exc:
        print(f"otel-mcp stack up: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        stopped = down(args.state_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing'}", flush=True)
    return code


def _cmd_down(args: argparse.Namespace) -> int:
    stopped = down(args.state_dir)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    st = status(args.state_dir)
    if args.json:
        doc = {
            "state_dir": str(st.state_dir),
            "healthy": st.healthy,
            "components": {
                c.name: {"pid": c.pid, "running": c.running, "healthy": c.healthy, "log": str(c.log),
                         "urls": c.urls}
                for c in st.components.values()
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        print(format_status(st))
    return 0 if st.healthy else 3
