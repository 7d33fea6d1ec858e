"""Telemetry overhead, side by side: telemetry off vs metrics only vs traces+metrics+logs.

One ``otel-mcp serve`` subprocess per mode (same seeded database, same
workload, real MCP clients from this process), all running at once; HTTP with
``--clients`` concurrent clients (default 8), stdio with one client and
``--clients`` requests in flight. Modes:

- ``off``: ``OTEL_SDK_DISABLED=true`` (the SDK's own no-op span middleware remains, as in production);
- ``metrics``: metrics to OTLP, no traces, no OTel logs (per-request JSON perf log on);
- ``traces``: traces (sampling 1.0, batch processor) and metrics to OTLP, perf log on, no OTel logs;
- ``all``: traces (sampling 1.0, batch processor), metrics and logs to OTLP, perf log on;
- ``metrics-bare`` (not run by default): metrics to OTLP and nothing else (no perf log file either);
- ``recommended`` (not run by default): ``all`` with the settings ``docs/performance.md`` recommends
  (``parentbased_traceidratio`` 0.1, ``OTEL_MCP_PERF_LOG_EXPORT=slow``);
- ``MODE+VARIANT`` adds a variant's settings (``VARIANTS``: ``stock`` without the fast paths, ``gc700``
  with Python's GC threshold, ``http`` over OTLP/HTTP); ``MODE@base`` runs the ``otel_mcp`` of the
  checkout given with ``--base`` (two versions side by side).

OTLP goes to the project's Collector build (``otel-mcp stack install``; the in-process gRPC sink without
it), so the exporters do their full work. The servers run pinned to one core (``taskset``), this
process (the clients) and the Collector on the other.

How it measures, so that a shared, noisy 2-core machine still gives usable ratios:

- interleaved: each round drives every mode's server in turn (A B C, then
  B C A, ...) for the same number of calls (``--calls``); the ratios are taken
  per round (paired) and the report gives their median, so drift in the
  machine's speed hits the modes alike;
- server CPU per call from the server process's own CPU time (the scheduler's
  nanoseconds, all threads) over the calls of its turn, not wall time; the
  report gives each ratio's median and interquartile range, and ``--compare
  SLOW:FAST`` the paired saving of one mode over another;
- background CPU (the periodic metric export and the rest of what a server
  does when idle) is reported apart, as a share of one core, measured on each
  server while the others take their turn; the per-call figures exclude it;
- ``--instructions`` counts instructions per call under ``valgrind
  --tool=callgrind`` instead: a diagnostic for where the time goes (periodic
  export switched off so that the count is per-call work), not the measure
  ``docs/performance.md`` judges telemetry by.

Usage::

    python -m otel_mcp.loadtest.overhead_bench                  # 10 rounds x 400 calls per mode and transport
    python -m otel_mcp.loadtest.overhead_bench --quick          # < 2 min, for CI
    python -m otel_mcp.loadtest.overhead_bench --instructions   # callgrind: instructions per call, per mode (~10 min)

Results: ``perf/results/overhead-<timestamp>.json`` (and printed as a table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psutil
from mcp.shared.exceptions import MCPError

from otel_mcp.loadtest import CHECKOUT
from otel_mcp.loadtest.loadgen.engine import TRANSPORT_ERROR_CODE, load_client

ROOT = CHECKOUT
RESULTS = ROOT / "perf" / "results"
MODES = ("off", "metrics", "traces", "all")
TRANSPORTS = ("http", "stdio")
TRANSPORT_ERRORS: list[str] = []  # calls whose POST failed at the transport (counted in the report, not timed)
NO_OTLP = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


# -- an OTLP sink ----------------------------------------------------------------------


def start_sink() -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            return metrics_service_pb2.ExportMetricsServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)  # type: ignore[no-untyped-call]
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%(grpc)d"}
      http: {endpoint: "127.0.0.1:%(http)d"}
exporters:
  debug: {verbosity: basic, sampling_initial: 1, sampling_thereafter: 1000}
service:
  telemetry: {metrics: {level: none}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
    metrics: {receivers: [otlp], exporters: [debug]}
    logs: {receivers: [otlp], exporters: [debug]}
"""
HTTP_SINK_PORT = 0  # the receiver's OTLP/HTTP port (set by start_receiver)


def start_receiver(tmp: Path) -> tuple[Any, int]:
    """The project's Collector build (``otel-mcp stack install``) receiving OTLP on both protocols, pinned to
    the clients' core; without the build, the in-process gRPC sink (HTTP modes then need the Collector)."""
    global HTTP_SINK_PORT
    from otel_mcp.stack.installer import collector_path

    binary = collector_path()
    if not binary.exists():
        print(f"no Collector at {binary}: in-process gRPC sink", file=sys.stderr)
        return start_sink()
    grpc_port, HTTP_SINK_PORT = free_port(), free_port()
    config = tmp / "collector.yaml"
    config.write_text(COLLECTOR_CONFIG % {"grpc": grpc_port, "http": HTTP_SINK_PORT})
    pin = ["taskset", "-c", str(1 - SERVER_CORE)] if shutil.which("taskset") else []
    proc = subprocess.Popen([*pin, str(binary), "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not _accepts(grpc_port) or not _accepts(HTTP_SINK_PORT):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the Collector did not start")
        time.sleep(0.1)

    class Stop:
        def stop(self, _grace: int) -> None:
            _stop(proc)

    return Stop(), grpc_port


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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


# Variants of a mode: ``<mode>+<variant>`` adds the variant's settings to the mode's (e.g. ``all+gc700``).
VARIANTS: dict[str, dict[str, str]] = {
    "gc700": {"OTEL_MCP_GC_YOUNG_THRESHOLD": "0"},  # Python's own young-generation threshold
    "fast": {"OTEL_MCP_FASTPATH": "on"},
    "stock": {"OTEL_MCP_FASTPATH": "off"},
    "http": {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    "same": {},  # a second server of the same mode (the gate's same-vs-same check)
}
BASE_CODE: list[Path] = []  # --base: the ``@base`` modes run the otel_mcp package found there


def mode_env(mode: str, sink_port: int, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE"))}
    label = mode
    if mode.endswith("@base"):
        assert BASE_CODE, "--base DIR is needed for @base modes"
        env["PYTHONPATH"] = str(BASE_CODE[0])
        mode = mode.removesuffix("@base")
    mode, *variants = mode.split("+")
    for variant in variants:
        env.update(VARIANTS[variant])
    tmp = tmp / label.replace("@", "-").replace("+", "-")
    env.update(OTEL_MCP_STATE_DIR=str(tmp / f"state-{mode}"), OTEL_MCP_CACHE_DIR=str(tmp / f"cache-{mode}"),
               PYTHONUNBUFFERED="1")
    endpoint = f"http://127.0.0.1:{sink_port}"
    if "http" in variants:
        endpoint = f"http://127.0.0.1:{HTTP_SINK_PORT}"
    if mode == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    elif mode in ("metrics", "metrics-bare"):
        env.update(NO_OTLP, OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
        if mode == "metrics-bare":
            env["OTEL_MCP_PERF_LOG"] = "off"
    else:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_TRACES_SAMPLER="parentbased_always_on")
        if mode == "traces":
            env["OTEL_LOGS_EXPORTER"] = "none"  # traces + metrics + the JSON file, no OTel log records
        elif mode == "recommended":  # docs/performance.md: 10 % of traces, OTel logs for slow requests only
            env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1",
                       OTEL_MCP_PERF_LOG_EXPORT="slow")
    env.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "5000")  # 12x the SDK default: its cost shows as background
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_CORE = 1  # the server runs here; this process (clients) and the OTLP receiver on the other core


def serve_args(db: Path, transport: str, port: int | None = None) -> list[str]:
    pin = ["taskset", "-c", str(SERVER_CORE)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    args = [*pin, sys.executable, "-m", "otel_mcp.cli", "serve", "--db", str(db), "--files-root", str(db.parent)]
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


async def drive(clients: list[Any], calls: int, offset: int = 0) -> tuple[list[float], float]:
    """``calls`` calls spread over ``clients`` (closed loop); (latencies, wall seconds)."""
    latencies: list[float] = []
    counter = iter(range(calls))

    async def worker(client: Any) -> None:
        for i in counter:
            name, args = CALLS[(i + offset) % len(CALLS)]
            start = time.perf_counter()
            try:
                result = await client.call_tool(name, args)
            except MCPError as exc:
                if exc.error.code != TRANSPORT_ERROR_CODE:
                    raise
                TRANSPORT_ERRORS.append(name)  # a failed POST (see loadgen.engine.ContainedTransport): not timed
                continue
            latencies.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(f"{name} failed: {result.content}")

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(worker, client)
    return latencies, time.perf_counter() - began


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU seconds of all the process's threads: the scheduler's nanosecond count where Linux gives it
    (``/proc/<pid>/task/*/schedstat``), else psutil's (in 10 ms ticks: too coarse for a 300-call turn)."""
    total_ns = 0
    try:
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            try:
                total_ns += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
    except OSError:
        total_ns = 0
    if total_ns:
        return total_ns / 1e9
    t = proc.cpu_times()
    return float(t.user + t.system)


class Target:
    """One mode's server and the clients that drive it."""

    def __init__(self, mode: str, process: psutil.Process, clients: list[Any]) -> None:
        self.mode = mode
        self.process = process
        self.clients = clients
        self.turns: list[dict[str, Any]] = []
        self.idle_cpu = 0.0
        self.idle_wall = 0.0


async def _open_targets(stack: AsyncExitStack, transport: str, modes: list[str], db: Path, sink_port: int,
                        tmp: Path, n_clients: int, procs: list[subprocess.Popen[bytes]]) -> list[Target]:
    from mcp import Client, StdioServerParameters

    targets = []
    me = psutil.Process()
    for mode in modes:
        env = mode_env(mode, sink_port, tmp)
        if transport == "http":
            port = free_port()
            proc = subprocess.Popen(serve_args(db, "http", port), env=env, cwd=env.get("PYTHONPATH", ROOT),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            await anyio.to_thread.run_sync(_wait_http, port, proc)
            clients = [await stack.enter_async_context(load_client(f"http://127.0.0.1:{port}/mcp", stack))
                       for _ in range(n_clients)]
            process = psutil.Process(proc.pid)
        else:
            before = {c.pid for c in me.children(recursive=True)}
            args = serve_args(db, "stdio")
            params = StdioServerParameters(command=args[0], args=args[1:], env=env,
                                           cwd=env.get("PYTHONPATH", str(ROOT)))
            client = await stack.enter_async_context(Client(params))
            new = [c for c in me.children(recursive=True)
                   if c.pid not in before and "otel_mcp.cli" in " ".join(c.cmdline())]
            process = new[0]
            clients = [client] * n_clients
        targets.append(Target(mode, process, clients))
    return targets


async def run_transport(transport: str, modes: list[str], db: Path, sink_port: int, tmp: Path, n_clients: int,
                        rounds: int, calls: int, warmup: int) -> list[Target]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with AsyncExitStack() as stack:
            targets = await _open_targets(stack, transport, modes, db, sink_port, tmp, n_clients, procs)
            for target in targets:
                await drive(target.clients, warmup)
            for n in range(rounds):
                order = targets[n % len(targets):] + targets[:n % len(targets)]  # A B C, B C A, C A B, ...
                others_cpu = {t.mode: cpu_seconds(t.process) for t in targets}
                round_began = time.perf_counter()
                for target in order:
                    cpu0 = cpu_seconds(target.process)
                    latencies, wall = await drive(target.clients, calls, offset=n)
                    cpu = cpu_seconds(target.process) - cpu0
                    target.turns.append({"round": n, "calls": calls, "wall_s": wall, "cpu_s": cpu,
                                         "latencies": latencies})
                    print(f"round {n} {transport:5} {target.mode:7} {calls / wall:8.1f}/s "
                          f"cpu {cpu / calls * 1e6:6.0f} us/call", file=sys.stderr)
                round_wall = time.perf_counter() - round_began
                for target in targets:  # while the others had their turn, this one was idle
                    busy = target.turns[-1]
                    target.idle_cpu += cpu_seconds(target.process) - others_cpu[target.mode] - busy["cpu_s"]
                    target.idle_wall += round_wall - busy["wall_s"]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return targets


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def iqr(values: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles (inclusive method; the values themselves when fewer than 2)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def summarize(targets: list[Target]) -> dict[str, Any]:
    """Per mode: totals over all turns; ``ratios_vs_off``: the median over rounds of the per-round ratio."""
    rows: dict[str, Any] = {}
    per_round: dict[str, dict[int, dict[str, float]]] = {}
    for target in targets:
        idle_rate = target.idle_cpu / target.idle_wall if target.idle_wall > 0 else 0.0
        latencies = sorted(x for turn in target.turns for x in turn["latencies"])
        calls = sum(t["calls"] for t in target.turns)
        wall = sum(t["wall_s"] for t in target.turns)
        cpu = sum(t["cpu_s"] for t in target.turns)
        rows[target.mode] = {
            "calls": calls,
            "throughput_per_s": calls / wall,
            "p50_ms": _quantile(latencies, 0.5) * 1000,
            "p99_ms": _quantile(latencies, 0.99) * 1000,
            "server_cpu_us_per_call": max(cpu - idle_rate * wall, 0.0) / calls * 1e6,
            "server_cpu_us_per_call_raw": cpu / calls * 1e6,
            "background_cpu_percent": round(idle_rate * 100, 2),
        }
        per_round[target.mode] = {}
        for turn in target.turns:
            lat = sorted(turn["latencies"])
            per_round[target.mode][turn["round"]] = {
                "throughput_per_s": turn["calls"] / turn["wall_s"],
                "p50_ms": _quantile(lat, 0.5) * 1000,
                "p99_ms": _quantile(lat, 0.99) * 1000,
                "server_cpu_us_per_call": max(turn["cpu_s"] - idle_rate * turn["wall_s"], 0.0) / turn["calls"] * 1e6,
            }
    if "off" in per_round:
        keys = ("throughput_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_call")
        for mode, row in rows.items():
            ratios: dict[str, Any] = {}
            for key in keys:
                values = [r[key] / per_round["off"][n][key] for n, r in per_round[mode].items()
                          if per_round["off"].get(n, {}).get(key)]
                if values:
                    ratios[key] = round(statistics.median(values), 3)
                    ratios[key + "_iqr"] = [round(q, 3) for q in iqr(values)]
            row["ratios_vs_off"] = ratios
            row["rounds_vs_off"] = {key: [round(r[key] / per_round["off"][n][key], 4) for n, r in
                                          sorted(per_round[mode].items()) if per_round["off"].get(n, {}).get(key)]
                                    for key in keys}
    return rows


def paired_saving(rows: dict[str, Any], slow: str, fast: str, key: str = "server_cpu_us_per_call") -> dict[str, Any]:
    """What ``fast`` saves over ``slow``, in points of the off mode's figure, round by round (paired): the
    median and interquartile range of ``slow/off - fast/off`` (positive: ``fast`` is cheaper)."""
    a, b = rows[slow]["rounds_vs_off"][key], rows[fast]["rounds_vs_off"][key]
    points = [(x - y) * 100 for x, y in zip(a, b, strict=True)]
    low, high = iqr(points)
    return {"median_points": round(statistics.median(points), 2), "iqr_points": [round(low, 2), round(high, 2)],
            "rounds": len(points)}


# -- instructions (callgrind) ----------------------------------------------------------


def measure_instructions(transport: str, mode: str, db: Path, sink_port: int, tmp: Path, clients: int,
                         calls: int) -> dict[str, Any]:
    """Instructions per call of ``mode``'s server under callgrind: instrumentation on only for the calls."""
    env = mode_env(mode, sink_port, tmp)
    # Time-driven work would be counted per wall second, which valgrind stretches ~50x: no periodic metric
    # export, and span and log record batches and perf-log lines go out by size (the shipped batch sizes: 64
    # spans, 512 log records, 64 lines), as they do under load (a timed export every second, or a perf-log write
    # every 250 ms, would carry a few records each under valgrind, hundreds in a real second); and valgrind's
    # slowness must not make statements and requests "slow" (slow-query spans, log lines and alerts a real run
    # lacks). A window of N calls holds N // 512 log exports or one more (the 40 warm-up records are queued).
    env.update(OTEL_METRIC_EXPORT_INTERVAL="3600000", OTEL_BSP_SCHEDULE_DELAY="60000",
               OTEL_BLRP_SCHEDULE_DELAY="60000", OTEL_MCP_PERF_LOG_FLUSH_MS="60000",
               OTEL_MCP_ALERT_SLOW_QUERY_MS="100000", OTEL_MCP_ALERT_SLOW_REQUEST_MS="1000000")
    out = tmp / f"callgrind.{transport}.{mode}.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]

    async def run() -> None:
        from mcp import Client, StdioServerParameters

        async with AsyncExitStack() as stack:
            if transport == "http":
                port = free_port()
                proc = subprocess.Popen(valgrind + serve_args(db, "http", port), env=env, cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                stack.callback(_stop, proc)
                await anyio.to_thread.run_sync(_wait_http, port, proc, 600.0)
                pid = proc.pid
                session = [await stack.enter_async_context(load_client(f"http://127.0.0.1:{port}/mcp", stack))
                           for _ in range(clients)]
            else:
                args = valgrind + serve_args(db, "stdio")
                params = StdioServerParameters(command=args[0], args=args[1:], env=env, cwd=str(ROOT))
                client = await stack.enter_async_context(Client(params, read_timeout_seconds=600))
                pid = next(c.pid for c in psutil.Process().children(recursive=True)
                           if f"--callgrind-out-file={out}" in c.cmdline())
                session = [client] * clients
            await drive(session, 40)
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
            await drive(session, calls)
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
            # dump now: a slow shutdown under valgrind may end in SIGKILL, which writes no profile
            subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)

    anyio.run(run)
    total, profile = 0, None
    for path in tmp.glob(out.name + "*"):
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")) and int(line.split()[1]) > total:
                total, profile = int(line.split()[1]), path
    gc = _gc_instructions(profile) if profile is not None else 0
    return {"transport": transport, "mode": mode, "calls": calls, "instructions_per_call": total / calls,
            "instructions_per_call_ex_gc": (total - gc) / calls}


def _gc_instructions(profile: Path) -> int:
    """Instructions spent in the cyclic GC (``gc_collect_main``, inclusive).

    Whether a collection pass falls in a mode's window moves its count by up to ~0.1 M a call, so the
    report gives the count without it too; the GC cost that telemetry's allocations bring is real, but
    only a much longer window would average it fairly.
    """
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(profile)],
                               check=False, capture_output=True, text=True).stdout
    for line in annotated.splitlines():
        if ":gc_collect_main " in line:
            return int(line.split()[0].replace(",", ""))
    return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- report ----------------------------------------------------------------------------


def _wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'transport':9} {'mode':8} {'calls':>6} {'thr/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>6} "
          f"{'bg %':>5}   {'thr x':>6} {'p50 x':>6} {'p99 x':>6} {'cpu x':>6}")
    for transport, rows in summary.items():
        for mode, row in rows.items():
            r = row.get("ratios_vs_off", {})
            print(f"{transport:9} {mode:8} {row['calls']:6d} {row['throughput_per_s']:7.1f} {row['p50_ms']:7.2f} "
                  f"{row['p99_ms']:7.2f} {row['server_cpu_us_per_call']:6.0f} {row['background_cpu_percent']:5.2f}   "
                  f"{r.get('throughput_per_s', 0):6.3f} {r.get('p50_ms', 0):6.3f} {r.get('p99_ms', 0):6.3f} "
                  f"{r.get('server_cpu_us_per_call', 0):6.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds for CI (< 2 min)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10, quick 3)")
    parser.add_argument("--calls", type=int, default=None, help="calls per mode per round (default 400, quick 150)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--instructions", action="store_true", help="callgrind instruction counts instead")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--compare", action="append", default=[], metavar="SLOW:FAST",
                        help="report the paired CPU saving of mode FAST over mode SLOW (repeatable)")
    parser.add_argument("--base", type=Path, default=None, metavar="DIR",
                        help="a checkout whose otel_mcp the MODE@base modes run (to compare two versions)")
    parser.add_argument("--keep-profiles", type=Path, default=None, metavar="DIR",
                        help="with --instructions: copy the callgrind profiles to DIR (for callgrind_annotate)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 10)
    calls = args.calls or (150 if args.quick else 400)
    transports = [t for t in args.transports.split(",") if t]
    modes = [m for m in args.modes.split(",") if m]
    BASE_CODE[:] = [args.base.resolve()] if args.base else []

    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1 - SERVER_CORE})  # clients here, the server alone on SERVER_CORE
    receiver_dir = tempfile.TemporaryDirectory(prefix="otel-mcp-receiver-")
    sink, sink_port = start_receiver(Path(receiver_dir.name))
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_before": list(os.getloadavg())},
        "settings": {"quick": args.quick, "rounds": rounds, "calls_per_turn": calls, "clients": args.clients,
                     "instructions": args.instructions},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="otel-mcp-overhead-") as d:
            tmp = Path(d)
            db = tmp / "rules.db"
            seed(db)
            if args.instructions:
                counts: dict[str, dict[str, Any]] = {}
                for transport in transports:
                    for mode in modes:
                        row = measure_instructions(transport, mode, db, sink_port, tmp, args.clients,
                                                   args.calls or 400)
                        counts.setdefault(transport, {})[mode] = row
                        if args.keep_profiles is not None:
                            args.keep_profiles.mkdir(parents=True, exist_ok=True)
                            for profile in tmp.glob(f"callgrind.{transport}.{mode}.out*"):
                                shutil.copy(profile, args.keep_profiles / profile.name)
                        base = counts[transport].get("off")
                        for key in ("", "_ex_gc"):
                            count = f"instructions_per_call{key}"
                            row[f"ratio_vs_off{key}"] = round(row[count] / base[count], 4) if base else None
                        print(f"{transport:5} {mode:12} {row['instructions_per_call'] / 1e6:8.3f} M instructions/call"
                              f"  x{row['ratio_vs_off']}   without GC {row['instructions_per_call_ex_gc'] / 1e6:8.3f} M"
                              f"  x{row['ratio_vs_off_ex_gc']}", file=sys.stderr)
                report["instructions"] = counts
            else:
                summary = {}
                for transport in transports:
                    targets = anyio.run(run_transport, transport, modes, db, sink_port, tmp, args.clients, rounds,
                                        calls, 50 if args.quick else 200)
                    summary[transport] = summarize(targets)
                report["summary"] = summary
                print_table(summary)
                report["paired_savings"] = {}
                for pair in args.compare:
                    slow, fast = pair.split(":")
                    for transport, rows in summary.items():
                        saving = paired_saving(rows, slow, fast)
                        report["paired_savings"][f"{transport} {slow} -> {fast}"] = saving
                        print(f"{transport:5} {fast} saves over {slow}: {saving['median_points']:+.2f} points of "
                              f"server CPU per call (IQR {saving['iqr_points']})")
    finally:
        sink.stop(0)
        receiver_dir.cleanup()
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["transport_errors"] = len(TRANSPORT_ERRORS)
    output = args.output or RESULTS / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"written {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
