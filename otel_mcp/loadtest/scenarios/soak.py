"""``soak``: a longer run at moderate load, watching the server's RSS, fds and latency drift.

The mixed workload, open loop at ``soak_rate`` for ``soak_duration`` (ci 20 s,
full 5 min), the server's RSS/fds/CPU sampled every 0.5 s. After a warm-up
(the first quarter), leak detection fits a line to RSS over time and fails on
*sustained* growth: the fitted growth over the measured span above
``RSS_GROWTH_LIMIT`` (fraction of the starting RSS) *and* the last quarter's
median above the second quarter's by that much as well (one GC-delayed spike
does not fail it). Fds must not grow by more than ``FD_GROWTH_LIMIT``; the
p99 of the last quarter must stay within ``P99_DRIFT_LIMIT`` x the second's.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

from otel_mcp.loadtest.loadgen.engine import PoolConfig, open_loop, open_pool, pick_weighted
from otel_mcp.loadtest.loadgen.server import IN_PROCESS_TELEMETRY, ProcessSampler, ServerProcess
from otel_mcp.loadtest.scenarios.common import (
    RunContext,
    check,
    cleanup_db,
    max_error_rate,
    resource_summary,
    verdict,
    workload_db,
)
from otel_mcp.loadtest.scenarios.mixed import EXPECTED, build_ops, rule_ids

RSS_GROWTH_LIMIT = 0.20
FD_GROWTH_LIMIT = 16
P99_DRIFT_LIMIT = 3.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 with fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def leak_checks(samples: list[dict[str, float]], timeline: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                             dict[str, float]]:
    """The soak's verdicts from resource samples and the latency timeline."""
    if len(samples) < 8:
        return [check("enough samples", False, f"{len(samples)} samples")], {}
    quarter = len(samples) // 4
    measured = samples[quarter:]
    start_rss = statistics.median(s["rss_mb"] for s in samples[quarter: 2 * quarter])
    end_rss = statistics.median(s["rss_mb"] for s in samples[3 * quarter:])
    fit = slope([(s["t"], s["rss_mb"]) for s in measured])
    span = measured[-1]["t"] - measured[0]["t"]
    fitted_growth = fit * span / start_rss if start_rss else 0.0
    median_growth = (end_rss - start_rss) / start_rss if start_rss else 0.0
    fds_growth = measured[-1]["fds"] - measured[0]["fds"]
    figures = {"rss_start_mb": round(start_rss, 2), "rss_end_mb": round(end_rss, 2),
               "rss_slope_mb_per_min": round(fit * 60, 3), "rss_fitted_growth": round(fitted_growth, 4),
               "rss_median_growth": round(median_growth, 4), "fds_growth": fds_growth}
    checks = [
        check("no sustained RSS growth", not (fitted_growth > RSS_GROWTH_LIMIT and median_growth > RSS_GROWTH_LIMIT),
              f"fitted {fitted_growth:+.1%}, medians {start_rss:.1f} -> {end_rss:.1f} MiB ({median_growth:+.1%}); "
              f"limit {RSS_GROWTH_LIMIT:.0%}"),
        check("no fd growth", fds_growth <= FD_GROWTH_LIMIT, f"{fds_growth:+.0f} fds (limit {FD_GROWTH_LIMIT})"),
    ]
    if len(timeline) >= 8:
        q = len(timeline) // 4
        early = statistics.median(w["p99_ms"] for w in timeline[q: 2 * q])
        late = statistics.median(w["p99_ms"] for w in timeline[3 * q:])
        drift = late / early if early else 1.0
        figures["p99_drift"] = round(drift, 3)
        checks.append(check("no latency drift", drift <= P99_DRIFT_LIMIT,
                            f"windowed p99 {early:.1f} -> {late:.1f} ms (x{drift:.2f}; limit x{P99_DRIFT_LIMIT})"))
    return checks, figures


SOAK_CACHE_MB = 8  # L1 for the soak's server: reached during the warm-up, so its filling is not "growth"
WARM_UP_SHARE = 0.5  # warm-up length as a share of the soak


def soak(ctx: RunContext) -> dict[str, Any]:
    """Moderate load for a longer time; fail on sustained RSS/fd growth or latency drift."""
    p = ctx.p
    db = workload_db(ctx)
    ids, small = rule_ids(db)
    # Bounded caches fill up first and look like growth: a small L1 and a warm-up at twice the rate bring
    # the server to its steady state before the RSS samples that the leak check fits begin.
    server = ServerProcess(db=db, env={**IN_PROCESS_TELEMETRY, "OTEL_MCP_CACHE_MEMORY_MB": str(SOAK_CACHE_MB)}).start()
    sampler = ProcessSampler([server.pid], interval=0.5)
    holder: dict[str, Any] = {}
    window = max(1.0, p["soak_duration"] / 40)
    try:
        async def main() -> None:
            async with open_pool(PoolConfig(url=server.url, http_sessions=p["sessions"])) as pool:
                ops = pick_weighted(build_ops(ids, small, ctx.seed))
                await open_loop(pool, ops, rate=2 * p["soak_rate"], duration=p["soak_duration"] * WARM_UP_SHARE,
                                seed=ctx.seed + 1, label="soak warm-up", window_s=window, progress=ctx.progress)
                sampler.start()
                holder["run"] = await open_loop(pool, ops, rate=p["soak_rate"], duration=p["soak_duration"],
                                                seed=ctx.seed, label="soak", window_s=window, progress=ctx.progress)

        anyio.run(main)
    finally:
        sampler.stop()
        server.stop()
        cleanup_db(db)
    result = holder["run"]
    checks, figures = leak_checks(sampler.samples, result["timeline"])
    checks.append(max_error_rate(result, 0.01, EXPECTED))
    return {"scenario": "soak", "status": verdict(checks), "checks": checks, "leak": figures,
            "throughput_rps": result["throughput_rps"], "latency": result["latency"], "phases": {"open": result},
            "resources": resource_summary(sampler), "finished_at": time.time()}
