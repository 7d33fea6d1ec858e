"""Same-run references for the CI gate: ratios that cancel out the machine's speed and load.

reference
    The raw MCP SDK serving a trivial ``echo`` tool (``otel_mcp.loadtest.loadgen.echo_server``)
    and otel-mcp, both over streamable HTTP on loopback, loaded alternately in
    ``rounds`` short closed-loop rounds (same client count): echo, then
    otel-mcp ``get_rule`` (a small read: the cost of our stack around a tool),
    then otel-mcp ``compose_rules`` (Zipf-hot, 1,000 rules). Ratios are taken
    per round and the median is kept, so a noisy neighbour slowing one round
    does not move the result.

telemetry-overhead
    Two otel-mcp servers on the same database, telemetry off
    (``OTEL_SDK_DISABLED=true``) and on (traces, metrics and logs exported by
    OTLP/HTTP to a loopback sink that discards them), loaded alternately with
    the same Zipf-hot compose workload. Reports throughput and p99 ratios on/off.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import time
from typing import Any

from mcp import Client

from otel_mcp.loadtest.loadgen.engine import Op, PoolConfig, call
from otel_mcp.loadtest.loadgen.server import ProcessSampler, ServerProcess, otlp_sink, sink_endpoint, telemetry_env
from otel_mcp.loadtest.scenarios.common import RunContext, check, cleanup_db, verdict, workload_db
from otel_mcp.loadtest.scenarios.compose import ComposeWorkload
from otel_mcp.loadtest.scenarios.mixed import rule_ids
from otel_mcp.loadtest.scenarios.rounds import median_of, paired_rounds


async def _echo(client: Client, rng: random.Random) -> None:
    result = await client.call_tool("echo", {"text": "ping"})
    if result.is_error:
        raise RuntimeError("echo failed")


def _get_rule_op(small: list[str]) -> Op:
    async def op(client: Client, rng: random.Random) -> None:
        await call(client, "get_rule", {"id": rng.choice(small)})

    return op


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0


def reference(ctx: RunContext) -> dict[str, Any]:
    """otel-mcp vs the raw SDK echo tool, interleaved rounds: the gate's ratios."""
    p = ctx.p
    db = workload_db(ctx)
    _, small = rule_ids(db)
    echo = ServerProcess(kind="echo").start()
    server = ServerProcess(db=db, env={"OTEL_SDK_DISABLED": "true"}).start()
    sampler = ProcessSampler([server.pid]).start()
    workload = ComposeWorkload(ctx.seed, hot=True)
    try:
        rows = paired_rounds(ctx, {
            "echo": (PoolConfig(url=echo.url, http_sessions=p["concurrency"]), lambda rng: ("echo", _echo)),
            "get_rule": (PoolConfig(url=server.url, http_sessions=p["concurrency"]),
                         lambda rng: ("get_rule", _get_rule_op(small))),
            "compose": (PoolConfig(url=server.url, http_sessions=p["concurrency"]), workload.picker),
        }, warm={"compose"})
    finally:
        sampler.stop()
        server.stop()
        echo.stop()
        cleanup_db(db)
    ratios: dict[str, float] = {}
    for arm in ("get_rule", "compose"):
        per_round_rps = [_ratio(a["throughput_rps"], e["throughput_rps"]) for a, e in zip(rows[arm], rows["echo"],
                                                                                          strict=True)]
        per_round_p99 = [_ratio(a["latency"]["p99_ms"], e["latency"]["p99_ms"]) for a, e in zip(rows[arm], rows["echo"],
                                                                                               strict=True)]
        ratios[f"{arm}_vs_echo_throughput"] = round(statistics.median(per_round_rps), 4)
        ratios[f"{arm}_vs_echo_p99"] = round(statistics.median(per_round_p99), 4)
    errors = sum(r["error_count"] for arm in rows.values() for r in arm)
    checks = [check("no errors", errors == 0, f"{errors} errors"),
              check("every arm served", all(r["ok"] > 0 for arm in rows.values() for r in arm), "")]
    return {"scenario": "reference", "status": verdict(checks), "checks": checks, "ratios": ratios,
            "arms": {arm: {"throughput_rps": median_of(r, "rps"), "p50_ms": median_of(r, "p50_ms"),
                           "p99_ms": median_of(r, "p99_ms"), "rounds": r} for arm, r in rows.items()},
            "throughput_rps": median_of(rows["compose"], "rps"),
            "latency": rows["compose"][-1]["latency"], "finished_at": time.time()}


def telemetry_overhead(ctx: RunContext) -> dict[str, Any]:
    """Telemetry on (OTLP to a loopback sink) vs off, interleaved rounds of the same compose workload."""
    p = ctx.p
    available = importlib.util.find_spec("otel_mcp.telemetry") is not None
    db = workload_db(ctx)
    with otlp_sink() as sink:
        off = ServerProcess(db=db, env=telemetry_env(False)).start()
        on = ServerProcess(db=db, env=telemetry_env(True, sink_endpoint(sink))).start()
        sampler_off = ProcessSampler([off.pid]).start()
        sampler_on = ProcessSampler([on.pid]).start()
        try:
            rows = paired_rounds(ctx, {
                "off": (PoolConfig(url=off.url, http_sessions=p["concurrency"]),
                        ComposeWorkload(ctx.seed, hot=True).picker),
                "on": (PoolConfig(url=on.url, http_sessions=p["concurrency"]),
                       ComposeWorkload(ctx.seed, hot=True).picker),
            }, warm={"off", "on"})
        finally:
            sampler_off.stop()
            sampler_on.stop()
            on.stop()
            off.stop()
            cleanup_db(db)
        exported = dict(sink.received)
    thr = [_ratio(a["throughput_rps"], b["throughput_rps"]) for a, b in zip(rows["on"], rows["off"], strict=True)]
    p99 = [_ratio(a["latency"]["p99_ms"], b["latency"]["p99_ms"]) for a, b in zip(rows["on"], rows["off"], strict=True)]
    cpu_off = sampler_off.summary().get("cpu_mean_pct", 0.0)
    cpu_on = sampler_on.summary().get("cpu_mean_pct", 0.0)
    errors = sum(r["error_count"] for arm in rows.values() for r in arm)
    checks = [check("no errors", errors == 0, f"{errors} errors")]
    return {"scenario": "telemetry-overhead", "status": verdict(checks), "checks": checks,
            "telemetry_available": available, "exported_posts": exported,
            "ratios": {"telemetry_on_vs_off_throughput": round(statistics.median(thr), 4),
                       "telemetry_on_vs_off_p99": round(statistics.median(p99), 4)},
            "arms": {arm: {"throughput_rps": median_of(r, "rps"), "p50_ms": median_of(r, "p50_ms"),
                           "p99_ms": median_of(r, "p99_ms"), "rounds": r} for arm, r in rows.items()},
            "cpu_mean_pct": {"off": cpu_off, "on": cpu_on},
            "throughput_rps": median_of(rows["on"], "rps"), "latency": rows["on"][-1]["latency"],
            "finished_at": time.time()}
