"""Run load scenarios and benchmarks, write ``results.json`` and the HTML report, and gate on baselines.

``python -m otel_mcp.loadtest.runner [SCENARIO ...] [--profile ci|full] [--out DIR] [--gate]``
(the same as ``otel-mcp perf run``). With no scenario names it runs every
scenario of the profile. ``--gate`` compares the run's ratios with
``perf/baselines/<profile>.json`` and exits 1 on a regression (see ``otel_mcp.loadtest.gate``).

The registry maps a name to a callable ``(RunContext) -> dict``. The result dict
has at least ``status`` (``pass``/``fail``/``skip``/``error``); load scenarios also
carry ``throughput_rps``, ``latency`` and ``checks``. Other benchmarks plug in by
exposing, in their module, ``perf_scenarios() -> dict[name, callable]``
(callables taking the ``RunContext``), ``run_bench(profile: str) -> dict``, or a
command line ``main(argv) -> exit code`` (run with ``--quick`` in the ci profile);
the modules listed in ``PLUGIN_MODULES`` are imported if present.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from otel_mcp.loadtest import LOAD_RESULTS_DIR
from otel_mcp.loadtest.scenarios.common import PROFILES, RunContext, Scenario

REGISTRY: dict[str, Scenario] = {}
# Scenarios each profile runs by default, in order; plugins are added when present.
DEFAULT_ORDER = ("reference", "telemetry-overhead", "compose-hot", "compose-cold", "mixed", "concurrent-updates",
                 "protocol-under-load", "soak", "ramp")
PLUGIN_MODULES = (
    "otel_mcp.loadtest.overhead_bench", "otel_mcp.loadtest.cache_bench", "otel_mcp.loadtest.cache_sim",
    "otel_mcp.loadtest.compression_bench", "otel_mcp.loadtest.glob_bench",
)
DEFAULT_OUT = LOAD_RESULTS_DIR


def register(name: str, fn: Scenario) -> None:
    REGISTRY[name] = fn


BUILTIN = (
    ("reference", "otel_mcp.loadtest.scenarios.reference", "reference"),
    ("telemetry-overhead", "otel_mcp.loadtest.scenarios.reference", "telemetry_overhead"),
    ("compose-hot", "otel_mcp.loadtest.scenarios.compose", "compose_hot"),
    ("compose-cold", "otel_mcp.loadtest.scenarios.compose", "compose_cold"),
    ("mixed", "otel_mcp.loadtest.scenarios.mixed", "mixed"),
    ("concurrent-updates", "otel_mcp.loadtest.scenarios.updates", "concurrent_updates"),
    ("protocol-under-load", "otel_mcp.loadtest.scenarios.protocol", "protocol_under_load"),
    ("soak", "otel_mcp.loadtest.scenarios.soak", "soak"),
    ("ramp", "otel_mcp.loadtest.scenarios.ramp", "ramp"),
    ("replicas", "otel_mcp.loadtest.scenarios.replicas", "replicas"),
)
# Run only when named: they start services of their own (``replicas``: a PostgreSQL server).
ON_REQUEST = frozenset({"replicas"})


def _builtin() -> None:
    for name, module, attr in BUILTIN:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        register(name, getattr(mod, attr))


def _plugin_runner(module: str, fn: Callable[[str], dict[str, Any]]) -> Scenario:
    def run(ctx: RunContext) -> dict[str, Any]:
        result = fn(ctx.profile)
        out = dict(result) if isinstance(result, dict) else {"result": result}
        out.setdefault("status", "pass")
        out.setdefault("source", module)
        return out

    return run


def _plugins() -> list[str]:
    names = []
    for module in PLUGIN_MODULES:
        try:
            mod = importlib.import_module(module)
        except Exception:  # absent or broken: the load suite still runs
            continue
        hook = getattr(mod, "perf_scenarios", None)
        if callable(hook):
            for name, fn in hook().items():
                register(name, fn)
                names.append(name)
        elif callable(getattr(mod, "run_bench", None)):
            name = module.rsplit(".", 1)[-1].replace("_", "-")
            register(name, _plugin_runner(module, mod.run_bench))
            names.append(name)
        elif callable(getattr(mod, "main", None)):
            name = module.rsplit(".", 1)[-1].replace("_", "-")
            register(name, _plugin_runner(module, _main_bench(mod.main)))
            names.append(name)
    return names


def _main_bench(main: Callable[[list[str]], int]) -> Callable[[str], dict[str, Any]]:
    """A benchmark with a command line (``main(argv) -> exit code``, 0 when its targets are met)."""

    def run_bench(profile: str) -> dict[str, Any]:
        code = main(["--quick"] if profile == "ci" else [])
        return {"status": "pass" if code == 0 else "fail", "exit_code": code}

    return run_bench


def load_registry() -> dict[str, Scenario]:
    if not REGISTRY:
        _builtin()
        _plugins()
    return REGISTRY


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(), "load_avg": os.getloadavg()}


def run(names: list[str] | None = None, profile: str = "ci", out_dir: Path = DEFAULT_OUT, seed: int = 20240601,
        progress: bool = True) -> dict[str, Any]:
    registry = load_registry()
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    chosen = names or [n for n in DEFAULT_ORDER if n in registry] + [
        n for n in registry if n not in DEFAULT_ORDER and n not in ON_REQUEST]
    unknown = [n for n in chosen if n not in registry]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {sorted(registry)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(profile=profile, out_dir=out_dir, seed=seed, progress=progress)
    results: dict[str, Any] = {"profile": profile, "seed": seed, "machine": machine(), "started_at": time.time(),
                               "scenarios": {}}
    for name in chosen:
        print(f"==> perf: {name} ({profile})", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            result = registry[name](ctx)
        except Exception as exc:
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["wall_s"] = round(time.monotonic() - t0, 2)
        results["scenarios"][name] = result
        print(f"    {name}: {result.get('status')} in {result['wall_s']}s {_headline(result)}", file=sys.stderr,
              flush=True)
    results["finished_at"] = time.time()
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    return results


def _headline(result: dict[str, Any]) -> str:
    parts = []
    if "throughput_rps" in result:
        parts.append(f"{result['throughput_rps']} req/s")
    if isinstance(result.get("latency"), dict) and "p99_ms" in result["latency"]:
        parts.append(f"p99 {result['latency']['p99_ms']} ms")
    if result.get("status") in ("fail", "error"):
        failed = [c["name"] for c in result.get("checks", []) if not c.get("ok")]
        parts.append(f"failed: {failed or result.get('error')}")
    return "; ".join(parts)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m otel_mcp.loadtest.runner",
                                               description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names (default: all)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci", help="ci (short) or full")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (results.json, report.html)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of every random choice")
    parser.add_argument("--gate", action="store_true", help="compare with perf/baselines and fail on regression")
    parser.add_argument("--no-report", action="store_true", help="skip the HTML report and plots")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args)


def run_cli(args: argparse.Namespace) -> int:
    registry = load_registry()
    if args.list:
        for name, fn in registry.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            print(f"{name:22} {doc[0] if doc else ''}")
        return 0
    names = list(args.scenarios)
    if args.gate and not names:
        from otel_mcp.loadtest.gate import gate_scenarios

        names = gate_scenarios(args.profile)
    results = run(names or None, args.profile, args.out, args.seed, progress=not args.quiet)
    if args.gate:
        # A scenario whose harness crashed (status "error") measured nothing; run it once more. A failed
        # check is a result and is never retried. (A dropped HTTP connection is no longer such a crash: it
        # is one transport:<type> error, see ContainedTransport in otel_mcp/loadtest/loadgen/engine.py.)
        crashed = [n for n, r in results["scenarios"].items() if r.get("status") == "error"]
        if crashed:
            print(f"perf: retrying once after a harness error: {', '.join(crashed)}", file=sys.stderr)
            retry = run(crashed, args.profile, args.out, args.seed, progress=not args.quiet)
            for name in crashed:
                results["scenarios"][name] = {**retry["scenarios"][name], "retried_after": results["scenarios"][name]}
    status = 0 if all(r.get("status") in ("pass", "skip") for r in results["scenarios"].values()) else 1
    if args.gate:
        from otel_mcp.loadtest.gate import evaluate, format_gate

        gate = evaluate(results, args.profile)
        results["gate"] = gate
        (args.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
        print(format_gate(gate), file=sys.stderr)
        status = status or (0 if gate["passed"] else 1)
    if not args.no_report:
        from otel_mcp.loadtest.report import write_report

        path = write_report(results, args.out)
        print(f"perf: report {path}", file=sys.stderr)
    failed = [n for n, r in results["scenarios"].items() if r.get("status") not in ("pass", "skip")]
    print(f"perf: {len(results['scenarios']) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
