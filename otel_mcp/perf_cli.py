"""``otel-mcp perf run|update-baselines|list``: the load testing suite from the command line.

The suite itself lives in the ``perf`` package (installed with the project);
it is imported only when a ``perf`` subcommand runs, so the server never pays for it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any


def _import(module: str) -> Any:
    """Import a ``perf`` module; from a source checkout whose editable install predates ``perf/``, add the
    checkout to the path (the suite ships beside ``otel_mcp``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != "perf":
            raise
        root = Path(__file__).resolve().parent.parent
        if not (root / "perf" / "__init__.py").exists():
            raise
        sys.path.insert(0, str(root))
        return importlib.import_module(module)


def _runner() -> Any:
    return _import("perf.runner")


def cmd_run(args: argparse.Namespace) -> int:
    status: int = _runner().run_cli(args)
    return status


def cmd_list(args: argparse.Namespace) -> int:
    args.list = True
    status: int = _runner().run_cli(args)
    return status


def cmd_update_baselines(args: argparse.Namespace) -> int:
    gate = _import("perf.gate")
    status: int = gate.update_baselines_cli(args)
    return status


def register_cli(subparsers: Any) -> None:
    perf = subparsers.add_parser("perf", help="load scenarios, HTML report and the regression gate")
    sub = perf.add_subparsers(dest="perf_command", required=True)

    run = sub.add_parser("run", help="run load scenarios (default: all) and write results.json + report.html")
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names (default: all)")
    run.add_argument("--profile", choices=["ci", "full"], default="ci", help="ci (short) or full")
    run.add_argument("--out", type=Path, default=Path("perf/results/load"), help="output folder")
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
    update.add_argument("--out", type=Path, default=Path("perf/results/load"))
    update.add_argument("--seed", type=int, default=20240601)
    update.add_argument("--from-results", type=Path, default=None,
                        help="take the ratios from an existing results.json instead of running")
    update.add_argument("--quiet", action="store_true")
    update.set_defaults(func=cmd_update_baselines)
