"""``otel-mcp perf run|update-baselines|list``: the load testing suite from the command line.

The suite lives in ``otel_mcp.loadtest``; it is imported only when a ``perf`` subcommand runs, so the
server never pays for it. Its histogram and plotting libraries come with the ``perf`` extra.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from otel_mcp.loadtest import LOAD_RESULTS_DIR

EXTRA_MODULES = ("hdrh", "matplotlib")  # what ``pip install 'otel-mcp[perf]'`` adds


def _import(module: str) -> Any:
    """Import a suite module; when a library of the ``perf`` extra is missing, say how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in EXTRA_MODULES:
            raise
        raise SystemExit(f"otel-mcp perf: {exc.name} is not installed; install the load suite's libraries "
                         "with: pip install 'otel-mcp[perf]'") from None


def _runner() -> Any:
    return _import("otel_mcp.loadtest.runner")


def cmd_run(args: argparse.Namespace) -> int:
    status: int = _runner().run_cli(args)
    return status


def cmd_list(args: argparse.Namespace) -> int:
    args.list = True
    status: int = _runner().run_cli(args)
    return status


def cmd_update_baselines(args: argparse.Namespace) -> int:
    gate = _import("otel_mcp.loadtest.gate")
    status: int = gate.update_baselines_cli(args)
    return status


def register_cli(subparsers: Any) -> None:
    perf = subparsers.add_parser("perf", help="load scenarios, HTML report and the regression gate")
    sub = perf.add_subparsers(dest="perf_command", required=True)

    run = sub.add_parser("run", help="run load scenarios (default: all) and write results.json + report.html")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names (default: all)")
    run.add_argument("--profile", choices=["ci", "full"], default="ci", help="ci (short) or full")
    run.add_argument("--out", type=Path, default=LOAD_RESULTS_DIR, help="output folder")
    run.add_argument("--seed", type=int, default=20240601, help="seed of every random choice")
    run.add_argument("--gate", action="store_true", help="compare with perf/baselines; exit 1 on regression")
    run.add_argument("--no-report", action="store_true", help="skip the HTML report and plots")
    run.add_argument("--quiet", action="store_true", help="no live progress line")
    run.set_defaults(func=cmd_run, list=False)

    lst = sub.add_parser("list", help="list the scenarios")
    lst.add_argument("scenarios", nargs="*", help=argparse.SUPPRESS)
    lst.set_defaults(func=cmd_list, gate=False, list=True)

    update = sub.add_parser("update-baselines", help="run the gate's scenarios and store their ratios as baselines")
    update.add_argument("--profile", choices=["ci", "full"], default="ci")
    update.add_argument("--out", type=Path, default=LOAD_RESULTS_DIR)
    update.add_argument("--seed", type=int, default=20240601)
    update.add_argument("--from-results", type=Path, default=None,
                        help="take the ratios from an existing results.json instead of running")
    update.add_argument("--quiet", action="store_true")
    update.set_defaults(func=cmd_update_baselines)
