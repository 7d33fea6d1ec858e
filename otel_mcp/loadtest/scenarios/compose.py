"""``compose-hot`` and ``compose-cold``: composition throughput and latency over 1,000 realistic rules.

compose-hot
    ``compose_rules`` requests drawn from a Zipf(1.1) distribution over 200
    distinct requests (a folder and two languages each, 8k token budget), so a
    warm cache answers most of them. Phase 1: closed loop (max throughput) over
    the HTTP sessions; phase 2: open loop at the profile's rate over HTTP
    sessions *and* stdio server processes, for honest latency. The request
    trace is saved (``trace.jsonl``) for the cache simulator to replay.

compose-cold
    The cache disabled (``OTEL_MCP_CACHE=false``) and every request distinct
    (sequential ranks, varying token budgets): the engine's full cost on each call.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import anyio
from mcp import Client

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.loadtest.loadgen import corpus
from otel_mcp.loadtest.loadgen.engine import Op, PoolConfig, call, closed_loop, open_loop, open_pool
from otel_mcp.loadtest.loadgen.server import IN_PROCESS_TELEMETRY, ProcessSampler, ServerProcess
from otel_mcp.loadtest.loadgen.zipf import Zipf
from otel_mcp.loadtest.scenarios.common import (
    RunContext,
    check,
    cleanup_db,
    max_error_rate,
    resource_summary,
    scrape,
    server_figures,
    verdict,
    workload_db,
)

HOT_DISTINCT = 200
ZIPF_S = 1.1
# Budgets the synthetic corpus can meet: its always rules alone take ~2.6 k tokens (a smaller budget is
# refused by design), and an unbounded composition of its 1,000 rules can pass max_result_bytes.
BUDGETS = (4000, 8000, 16000, 32000, 64000)


def compose_args(rank: int, budget: int | None = 8000) -> dict[str, Any]:
    args: dict[str, Any] = {"context_files": corpus.request_files(rank)}
    if budget is not None:
        args["token_budget"] = budget
    return args


def request_key(args: dict[str, Any]) -> str:
    return ComposeRequest.from_args(args.get("context_files"), None, None, None, args.get("token_budget")).key()


class ComposeWorkload:
    """Picks compose requests (Zipf-hot or all-distinct) and remembers the keys sent, in order."""

    def __init__(self, seed: int, hot: bool) -> None:
        self.hot = hot
        self.zipf = Zipf(HOT_DISTINCT, ZIPF_S, seed)
        self.next_rank = 10_000
        self.keys: list[str] = []

    def args(self, rng: random.Random) -> dict[str, Any]:
        if self.hot:
            return compose_args(self.zipf.sample())
        self.next_rank += 1
        return compose_args(self.next_rank, BUDGETS[self.next_rank % len(BUDGETS)])

    def picker(self, rng: random.Random) -> tuple[str, Op]:
        args = self.args(rng)
        self.keys.append(request_key(args))

        async def op(client: Client, _rng: random.Random) -> None:
            manifest = await call(client, "compose_rules", args)
            if "composition_hash" not in manifest:
                raise RuntimeError("compose_rules returned no manifest")

        return "compose_rules", op

    def repeat_ratio(self) -> float:
        """Requests whose key was sent before: the hit rate of an unbounded cache."""
        seen: set[str] = set()
        repeats = 0
        for key in self.keys:
            repeats += key in seen
            seen.add(key)
        return round(repeats / len(self.keys), 4) if self.keys else 0.0


def _run(ctx: RunContext, name: str, hot: bool) -> dict[str, Any]:
    p = ctx.p
    db = workload_db(ctx)
    out = ctx.scenario_dir(name)
    workload = ComposeWorkload(ctx.seed, hot)
    server = ServerProcess(db=db, cache=hot, env=IN_PROCESS_TELEMETRY).start()
    sampler = ProcessSampler([server.pid]).start()
    phases: dict[str, Any] = {}
    try:
        before = scrape(server)

        async def main() -> None:
            http_only = PoolConfig(url=server.url, http_sessions=p["concurrency"])
            async with open_pool(http_only) as pool:
                if hot:  # warm up: every distinct request once, as an agent fleet would over a day
                    for rank in range(p["warm"]):
                        async with pool.borrow() as client:
                            await call(client, "compose_rules", compose_args(rank))
                phases["closed"] = await closed_loop(
                    pool, workload.picker, concurrency=p["concurrency"], duration=p["duration"], seed=ctx.seed,
                    label=f"{name} closed", progress=ctx.progress)
            mixed = PoolConfig(url=server.url, http_sessions=p["sessions"], stdio_procs=p["stdio_procs"],
                               stdio_db=db, stdio_env={"OTEL_SDK_DISABLED": "true",
                                                       "OTEL_MCP_CACHE": "true" if hot else "false"})
            async with open_pool(mixed) as pool:
                for pid in pool.stdio_pids:
                    sampler.add(pid)
                phases["open"] = await open_loop(
                    pool, workload.picker, rate=p["rate"], duration=p["duration"], seed=ctx.seed + 7,
                    label=f"{name} open", progress=ctx.progress)
                phases["open"]["stdio_procs"] = len(pool.stdio_pids)

        anyio.run(main)
        figures = server_figures(before, scrape(server))
    finally:
        sampler.stop()
        server.stop()
        cleanup_db(db)
    if hot:
        (out / "trace.jsonl").write_text("\n".join(json.dumps(k) for k in workload.keys) + "\n")
    figures["client_repeat_ratio"] = workload.repeat_ratio()
    closed, opened = phases["closed"], phases["open"]
    checks = [max_error_rate(closed), max_error_rate(opened),
              check("served requests", closed["ok"] > 0 and opened["ok"] > 0, f"{closed['ok']} + {opened['ok']}")]
    return {
        "scenario": name,
        "status": verdict(checks),
        "checks": checks,
        "throughput_rps": closed["throughput_rps"],
        "latency": opened["latency"],
        "phases": phases,
        "server": figures,
        "resources": resource_summary(sampler),
        "finished_at": time.time(),
    }


def compose_hot(ctx: RunContext) -> dict[str, Any]:
    """Zipf-hot compositions (mostly cache hits)."""
    return _run(ctx, "compose-hot", hot=True)


def compose_cold(ctx: RunContext) -> dict[str, Any]:
    """Cache off, every request distinct, 1,000 rules of 1 KiB..1 MiB."""
    return _run(ctx, "compose-cold", hot=False)
