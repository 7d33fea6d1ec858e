"""Telemetry overhead, side by side: telemetry off vs metrics only vs traces+metrics+logs.

Each (transport, mode) runs its own ``otel-mcp serve`` subprocess on the same
seeded database, with the same workload from this process (real MCP clients):
HTTP with ``--clients`` concurrent clients (default 8), stdio with one client
and ``--clients`` concurrent requests. Modes:

- ``off``: ``OTEL_SDK_DISABLED=true`` (the SDK's own no-op span middleware remains, as in production);
- ``metrics``: metrics to OTLP, no traces, no OTel logs (per-request JSON perf log on);
- ``all``: traces (sampling 1.0, batch processor), metrics and logs to OTLP, perf log on.

OTLP goes to a minimal gRPC sink started here (accepts and drops), so the
exporters do their full work. Server CPU per call comes from the server
process's CPU times (psutil). Modes run interleaved over ``--rounds`` rounds
so drift in the machine's speed hits them alike; the report gives medians and
ratios to ``off``.

Usage::

    python -m perf.overhead_bench            # ~6 min
    python -m perf.overhead_bench --quick    # < 2 min, for CI

Results: ``perf/results/overhead-<timestamp>.json`` (and printed as a table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import anyio
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results"
MODES = ("off", "metrics", "all")
TRANSPORTS = ("http", "stdio")
NO_OTLP = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


# -- an OTLP sink ----------------------------------------------------------------------


def start_sink() -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


# -- servers ---------------------------------------------------------------------------


def seed(db: Path, n: int = 30) -> None:
    from otel_mcp.store import RuleStore

    store = RuleStore(db)
    try:
        for i in range(n):
            store.create({
                "id": f"rule-{i:02d}", "body": f"Rule {i}: " + "keep functions small and typed. " * 20,
                "activation": "always" if i < 3 else "auto", "globs": [f"**/*.{['py', 'ts', 'go'][i % 3]}"],
                "priority": i % 7, "description": f"rule number {i}",
            })
    finally:
        store.close()


def mode_env(mode: str, sink_port: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE"))}
    env.update(OTEL_MCP_STATE_DIR=str(tmp / f"state-{mode}"), OTEL_MCP_CACHE_DIR=str(tmp / f"cache-{mode}"),
               PYTHONUNBUFFERED="1")
    endpoint = f"http://127.0.0.1:{sink_port}"
    if mode == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    elif mode == "metrics":
        env.update(NO_OTLP, OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    else:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_TRACES_SAMPLER="parentbased_always_on")
    env.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "5000")
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_args(db: Path, transport: str, port: int | None = None) -> list[str]:
    args = [sys.executable, "-m", "otel_mcp.cli", "serve", "--db", str(db), "--files-root", str(db.parent)]
    if transport == "http":
        args += ["--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    return args


# -- workload --------------------------------------------------------------------------

CALLS = (
    ("compose_rules", {"context_files": ["src/app.py"]}),
    ("compose_rules", {"context_files": ["web/index.ts", "cmd/main.go"]}),
    ("get_rule", {"id": "rule-05"}),
    ("list_rules", {"limit": 10}),
)


async def drive(clients: list[Any], duration: float, warmup: float) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup
    counted = 0
    first = last = 0.0

    async def worker(client: Any, offset: int) -> None:
        nonlocal counted, first, last
        i = offset
        while True:
            name, args = CALLS[i % len(CALLS)]
            i += 1
            start = time.perf_counter()
            if start >= stop_at:
                return
            result = await client.call_tool(name, args)
            end = time.perf_counter()
            if result.is_error:
                raise RuntimeError(f"{name} failed: {result.content}")
            if start >= measure_from:
                latencies.append(end - start)
                counted += 1
                first = first or start
                last = end

    async with anyio.create_task_group() as tg:
        for n, client in enumerate(clients):
            tg.start_soon(worker, client, n)
    return latencies, max(last - first, 1e-9), counted


async def run_http(port: int, n_clients: int, duration: float, warmup: float) -> tuple[list[float], float, int]:
    from contextlib import AsyncExitStack

    from mcp import Client

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(f"http://127.0.0.1:{port}/mcp")) for _ in range(n_clients)]
        return await drive(clients, duration, warmup)


async def run_stdio(args: list[str], env: dict[str, str], n_tasks: int, duration: float, warmup: float,
                    pid_box: list[int]) -> tuple[list[float], float, int]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=args[0], args=args[1:], env=env, cwd=str(ROOT))
    async with Client(params) as client:
        me = psutil.Process()
        children = [c for c in me.children(recursive=True) if "otel_mcp.cli" in " ".join(c.cmdline())]
        pid_box.extend(c.pid for c in children)
        pid_box.append(-1)  # ready marker
        return await drive([client] * n_tasks, duration, warmup)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def measure(transport: str, mode: str, db: Path, sink_port: int, tmp: Path, clients: int, duration: float,
            warmup: float) -> dict[str, Any]:
    env = mode_env(mode, sink_port, tmp)
    if transport == "http":
        port = free_port()
        proc = subprocess.Popen(serve_args(db, "http", port), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_http(port, proc)
            server = psutil.Process(proc.pid)
            cpu0, t0 = cpu_seconds(server), time.perf_counter()
            latencies, wall, calls = anyio.run(run_http, port, clients, duration, warmup)
            cpu1, t1 = cpu_seconds(server), time.perf_counter()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    else:
        # CPU for stdio: sampled around the measured window from the child the client started.
        pid_box: list[int] = []
        result: dict[str, Any] = {}

        async def run() -> None:
            async with anyio.create_task_group() as tg:
                async def go() -> None:
                    result["r"] = await run_stdio(serve_args(db, "stdio"), env, clients, duration, warmup, pid_box)

                tg.start_soon(go)
                while -1 not in pid_box:
                    await anyio.sleep(0.01)
                server = psutil.Process(pid_box[0])
                await anyio.sleep(warmup)
                result["cpu0"], result["t0"] = cpu_seconds(server), time.perf_counter()
                await anyio.sleep(duration)
                result["cpu1"], result["t1"] = cpu_seconds(server), time.perf_counter()

        anyio.run(run)
        latencies, wall, calls = result["r"]
        cpu0, cpu1, t0, t1 = result["cpu0"], result["cpu1"], result["t0"], result["t1"]
    latencies.sort()
    throughput = calls / wall
    cpu_per_call = (cpu1 - cpu0) / max(throughput * (t1 - t0), 1)
    return {
        "transport": transport, "mode": mode, "calls": calls,
        "throughput_per_s": throughput,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "server_cpu_us_per_call": cpu_per_call * 1e6,
    }


def _wait_http(port: int, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    keys = ("throughput_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call")
    for transport in TRANSPORTS:
        rows = {}
        for mode in MODES:
            mine = [r for r in runs if r["transport"] == transport and r["mode"] == mode]
            if mine:
                rows[mode] = {k: statistics.median(r[k] for r in mine) for k in keys}
        if "off" in rows:
            for row in rows.values():
                row["ratios_vs_off"] = {k: round(row[k] / rows["off"][k], 3) for k in keys if rows["off"][k]}
        if rows:
            summary[transport] = rows
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'transport':9} {'mode':8} {'thr/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu us':>8}   "
          f"{'thr x':>6} {'p50 x':>6} {'p99 x':>6} {'cpu x':>6}")
    for transport, rows in summary.items():
        for mode, row in rows.items():
            r = row.get("ratios_vs_off", {})
            print(f"{transport:9} {mode:8} {row['throughput_per_s']:8.1f} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} "
                  f"{row['server_cpu_us_per_call']:8.0f}   {r.get('throughput_per_s', 0):6.3f} "
                  f"{r.get('p50_ms', 0):6.3f} {r.get('p99_ms', 0):6.3f} {r.get('server_cpu_us_per_call', 0):6.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs for CI (< 2 min)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (5.0 if args.quick else 15.0)
    warmup = 1.0 if args.quick else 3.0
    transports = [t for t in args.transports.split(",") if t]
    modes = [m for m in args.modes.split(",") if m]

    sink, sink_port = start_sink()
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="otel-mcp-overhead-") as d:
            tmp = Path(d)
            db = tmp / "rules.db"
            seed(db)
            for n in range(rounds):
                for transport in transports:
                    order = modes if n % 2 == 0 else list(reversed(modes))
                    for mode in order:
                        run = measure(transport, mode, db, sink_port, tmp, args.clients, duration, warmup)
                        run["round"] = n
                        runs.append(run)
                        print(f"round {n} {transport:5} {mode:7} {run['throughput_per_s']:8.1f}/s "
                              f"p50 {run['p50_ms']:.3f} ms p99 {run['p99_ms']:.3f} ms "
                              f"cpu {run['server_cpu_us_per_call']:.0f} us/call", file=sys.stderr)
    finally:
        sink.stop(0)
    summary = summarize(runs)
    print_table(summary)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"quick": args.quick, "rounds": rounds, "duration_s": duration, "clients": args.clients},
        "summary": summary, "runs": runs,
    }
    output = args.output or RESULTS / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"written {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
