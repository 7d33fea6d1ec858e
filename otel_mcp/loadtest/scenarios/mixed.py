"""``mixed``: 90% reads, 10% writes, open loop over HTTP sessions and stdio server processes.

Reads (90%): ``compose_rules`` 35, ``get_rule`` 20, ``list_rules`` 15 (paged),
``search_rules`` 10, ``rules://{id}`` 5, ``rules://index`` 2, ``rule_history`` 3.
Writes (10%): ``update_rule`` 7 (read the version, then write with
``expected_version``: a conflict with another writer is an expected outcome,
counted apart), ``create_rule`` 2, ``validate_rule`` 1 (a write-path call that stores nothing).
Writes touch only the small rules (< 16 KiB), as people edit style rules, not
reference documents. Every HTTP session and stdio process shares one database.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from otel_mcp.loadtest.loadgen.engine import Op, OpError, PoolConfig, call, open_loop, open_pool, pick_weighted
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
from otel_mcp.loadtest.scenarios.compose import HOT_DISTINCT, compose_args

SEARCH_TERMS = ("typescript", "react hooks", "error handling", "testing", "performance", "security",
                "python type hints", "database migrations", "accessibility", "state management", "docker",
                "naming conventions", "async", "logging", "api design")
EXPECTED = ("conflict",)


def rule_ids(db: Path) -> tuple[list[str], list[str]]:
    """(all ids, ids of small rules) in the database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, length(body) FROM rules ORDER BY id").fetchall()
    finally:
        conn.close()
    return [r[0] for r in rows], [r[0] for r in rows if r[1] < 16 * 1024]


def build_ops(ids: list[str], small: list[str], seed: int) -> list[tuple[str, float, Op]]:
    zipf = Zipf(HOT_DISTINCT, 1.1, seed)
    popular = Zipf(len(ids), 0.9, seed + 1)
    created = [0]

    async def compose(client: Client, rng: random.Random) -> None:
        await call(client, "compose_rules", compose_args(zipf.sample()))

    async def get_rule(client: Client, rng: random.Random) -> None:
        await call(client, "get_rule", {"id": ids[popular.sample()]})

    async def list_rules(client: Client, rng: random.Random) -> None:
        args: dict[str, Any] = {"limit": rng.choice((20, 50, 100))}
        if rng.random() < 0.5:
            args["cursor"] = ids[rng.randrange(len(ids))]
        await call(client, "list_rules", args)

    async def search(client: Client, rng: random.Random) -> None:
        await call(client, "search_rules", {"query": rng.choice(SEARCH_TERMS), "limit": 20})

    async def read_rule(client: Client, rng: random.Random) -> None:
        await client.read_resource(f"rules://{ids[popular.sample()]}")

    async def read_index(client: Client, rng: random.Random) -> None:
        await client.read_resource("rules://index")

    async def history(client: Client, rng: random.Random) -> None:
        await call(client, "rule_history", {"id": rng.choice(small), "limit": 10})

    async def update(client: Client, rng: random.Random) -> None:
        rule_id = rng.choice(small)
        current = await call(client, "get_rule", {"id": rule_id})
        await call(client, "update_rule", {"id": rule_id, "expected_version": current["version"],
                                           "description": f"edited {rng.random():.6f}"})

    async def create(client: Client, rng: random.Random) -> None:
        created[0] += 1
        body = f"# New rule {created[0]}\n\nPrefer small functions; name things for what they do ({rng.random()})."
        await call(client, "create_rule", {"id": f"perf-new-{seed}-{created[0]}-{rng.randrange(10**9)}",
                                           "body": body, "activation": "agent_requested",
                                           "description": "created by the mixed load scenario"})

    async def validate(client: Client, rng: random.Random) -> None:
        result = await call(client, "validate_rule", {"id": "perf-validate", "body": "Use descriptive names.",
                                                      "imports": [rng.choice(small)]})
        if not result.get("valid"):
            raise OpError("invalid", str(result))

    return [("compose_rules", 35, compose), ("get_rule", 20, get_rule), ("list_rules", 15, list_rules),
            ("search_rules", 10, search), ("read rules://{id}", 5, read_rule), ("read rules://index", 2, read_index),
            ("rule_history", 3, history), ("update_rule", 7, update), ("create_rule", 2, create),
            ("validate_rule", 1, validate)]


def mixed(ctx: RunContext) -> dict[str, Any]:
    """90% reads / 10% writes over HTTP sessions and stdio processes on one database."""
    p = ctx.p
    db = workload_db(ctx)
    ids, small = rule_ids(db)
    server = ServerProcess(db=db, env=IN_PROCESS_TELEMETRY).start()
    sampler = ProcessSampler([server.pid]).start()
    holder: dict[str, Any] = {}
    try:
        before = scrape(server)

        async def main() -> None:
            config = PoolConfig(url=server.url, http_sessions=p["sessions"], stdio_procs=p["stdio_procs"],
                                stdio_db=db, stdio_env=IN_PROCESS_TELEMETRY)
            async with open_pool(config) as pool:
                for pid in pool.stdio_pids:
                    sampler.add(pid)
                holder["run"] = await open_loop(
                    pool, pick_weighted(build_ops(ids, small, ctx.seed)), rate=p["rate"], duration=p["duration"] * 2,
                    seed=ctx.seed, label="mixed", progress=ctx.progress)

        anyio.run(main)
        figures = server_figures(before, scrape(server))
    finally:
        sampler.stop()
        server.stop()
        cleanup_db(db)
    result = holder["run"]
    checks = [max_error_rate(result, 0.01, EXPECTED),
              check("every operation ran", len(result["by_op"]) >= 8, f"{sorted(result['by_op'])}")]
    return {"scenario": "mixed", "status": verdict(checks), "checks": checks,
            "throughput_rps": result["throughput_rps"], "latency": result["latency"], "phases": {"open": result},
            "server": figures, "resources": resource_summary(sampler), "finished_at": time.time()}
