"""``ramp``: stepwise increasing arrival rate to find the knee at a p99 target.

Zipf-hot ``compose_rules`` open loop at each rate of ``ramp_rates`` for
``ramp_step`` seconds (latency from the due time, so an overloaded step shows
its queueing). A step is *sustained* when its p99 is within ``P99_TARGET_MS``
and it completed at least 95% of the offered rate with under 1% errors. The
knee is the highest sustained rate; the ramp stops two steps after the first
unsustained one (bounded in time even on a slow machine).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from otel_mcp.loadtest.loadgen.engine import PoolConfig, call, open_loop, open_pool
from otel_mcp.loadtest.loadgen.server import IN_PROCESS_TELEMETRY, ProcessSampler, ServerProcess
from otel_mcp.loadtest.scenarios.common import RunContext, check, cleanup_db, resource_summary, verdict, workload_db
from otel_mcp.loadtest.scenarios.compose import ComposeWorkload, compose_args

P99_TARGET_MS = 250.0


def sustained(step: dict[str, Any], target_ms: float = P99_TARGET_MS) -> bool:
    offered = step["offered_rps"] * step["duration_s"]
    return bool(step["latency"]["p99_ms"] <= target_ms and step["ok"] >= 0.95 * offered
                and step["error_count"] <= 0.01 * max(1, step["sent"]))


def find_knee(steps: list[dict[str, Any]], target_ms: float = P99_TARGET_MS) -> float | None:
    good = [s["offered_rps"] for s in steps if sustained(s, target_ms)]
    return max(good) if good else None


def ramp(ctx: RunContext) -> dict[str, Any]:
    """Stepwise rate increase; the knee is the highest rate held at p99 <= target."""
    p = ctx.p
    db = workload_db(ctx)
    server = ServerProcess(db=db, env=IN_PROCESS_TELEMETRY).start()
    sampler = ProcessSampler([server.pid]).start()
    steps: list[dict[str, Any]] = []
    try:
        async def main() -> None:
            async with open_pool(PoolConfig(url=server.url, http_sessions=p["sessions"])) as pool:
                for rank in range(p["warm"]):
                    async with pool.borrow() as client:
                        await call(client, "compose_rules", compose_args(rank))
                misses = 0
                for i, rate in enumerate(p["ramp_rates"]):
                    step = await open_loop(pool, ComposeWorkload(ctx.seed + i, hot=True).picker, rate=float(rate),
                                           duration=p["ramp_step"], seed=ctx.seed + i, drain_s=5.0,
                                           label=f"ramp {rate}/s", progress=ctx.progress)
                    step["sustained"] = sustained(step)
                    steps.append(step)
                    misses += not step["sustained"]
                    if misses >= 2:
                        break

        anyio.run(main)
    finally:
        sampler.stop()
        server.stop()
        cleanup_db(db)
    knee = find_knee(steps)
    checks = [check("ramp ran", len(steps) >= 2, f"{len(steps)} steps"),
              check("a sustainable rate exists", knee is not None, f"knee {knee} req/s at p99 <= {P99_TARGET_MS} ms")]
    return {"scenario": "ramp", "status": verdict(checks), "checks": checks, "knee_rps": knee,
            "p99_target_ms": P99_TARGET_MS,
            "steps": [{"offered_rps": s["offered_rps"], "throughput_rps": s["throughput_rps"], "sent": s["sent"],
                       "ok": s["ok"], "errors": s["errors"], "latency": s["latency"], "sustained": s["sustained"]}
                      for s in steps],
            "throughput_rps": max((s["throughput_rps"] for s in steps), default=0.0),
            "latency": steps[-1]["latency"] if steps else {}, "phases": {f"step-{i}": s for i, s in enumerate(steps)},
            "resources": resource_summary(sampler), "finished_at": time.time()}
