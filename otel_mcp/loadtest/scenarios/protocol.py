"""``protocol-under-load``: every message on the wire schema-checked, for the whole run, under load.

The mixed workload (see ``mixed``) plus ``tools/list``, ``resources/list``,
``prompts/list``/``prompts/get`` and deliberately failing calls (unknown
rule, bad arguments, unknown resource: error paths must be well-formed too),
open loop over HTTP sessions whose httpx transport captures the raw bodies.
Each message is validated against the schema models of the negotiated protocol
version, with JSON-RPC id matching per exchange (``otel_mcp.loadtest.loadgen.wire``). Any
violation fails the scenario; the offending messages are saved under
``protocol-under-load/violations/``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import anyio
from mcp import Client

from otel_mcp.loadtest.loadgen.engine import Op, OpError, PoolConfig, call, open_loop, open_pool, pick_weighted
from otel_mcp.loadtest.loadgen.server import ProcessSampler, ServerProcess
from otel_mcp.loadtest.loadgen.wire import WireValidator, capturing_client_factory
from otel_mcp.loadtest.scenarios.common import (
    RunContext,
    check,
    cleanup_db,
    max_error_rate,
    resource_summary,
    verdict,
    workload_db,
)
from otel_mcp.loadtest.scenarios.mixed import build_ops, rule_ids

EXPECTED = ("conflict", "not_found", "tool_error", "mcp_error:-32602", "mcp_error:-32002", "mcp_error:-32601",
            "resource_error")


def protocol_ops(ids: list[str], small: list[str], seed: int) -> list[tuple[str, float, Op]]:
    async def list_tools(client: Client, rng: random.Random) -> None:
        await client.list_tools()

    async def list_resources(client: Client, rng: random.Random) -> None:
        await client.list_resources()
        await client.list_resource_templates()

    async def prompts(client: Client, rng: random.Random) -> None:
        await client.list_prompts()
        await client.get_prompt("compose", {"context_files": "services/svc01/app/main.py", "token_budget": "2000"})

    async def missing_rule(client: Client, rng: random.Random) -> None:
        try:
            await call(client, "get_rule", {"id": f"no-such-rule-{rng.randrange(1000)}"})
        except OpError as exc:
            if exc.kind != "not_found":
                raise
            return
        raise OpError("unexpected_success", "get_rule of a missing rule succeeded")

    async def bad_args(client: Client, rng: random.Random) -> None:
        result = await client.call_tool("list_rules", {"limit": -5})
        if not result.is_error:
            raise OpError("unexpected_success", "list_rules accepted limit=-5")

    async def missing_resource(client: Client, rng: random.Random) -> None:
        try:
            await client.read_resource("rules://no-such-rule")
        except Exception:
            return
        raise OpError("unexpected_success", "reading a missing rule succeeded")

    extra: list[tuple[str, float, Op]] = [
        ("tools/list", 3, list_tools), ("resources/list", 2, list_resources), ("prompts", 2, prompts),
("missing rule", 2, missing_rule), ("bad arguments", 2, bad_args),
        ("missing resource", 1, missing_resource)]
    return build_ops(ids, small, seed) + extra


def protocol_under_load(ctx: RunContext) -> dict[str, Any]:
    """Schema validation of every request and response on the wire, with JSON-RPC id matching."""
    p = ctx.p
    db = workload_db(ctx)
    ids, small = rule_ids(db)
    validator = WireValidator()
    server = ServerProcess(db=db, env={"OTEL_SDK_DISABLED": "true"}).start()
    sampler = ProcessSampler([server.pid]).start()
    holder: dict[str, Any] = {}
    try:
        async def main() -> None:
            config = PoolConfig(url=server.url, http_sessions=p["sessions"],
                                http_client_factory=capturing_client_factory(validator))
            async with open_pool(config) as pool:
                holder["run"] = await open_loop(pool, pick_weighted(protocol_ops(ids, small, ctx.seed)),
                                                rate=p["rate"], duration=p["duration"] * 1.5, seed=ctx.seed,
                                                label="protocol-under-load", progress=ctx.progress)

        anyio.run(main)
    finally:
        sampler.stop()
        server.stop()
        cleanup_db(db)
    result = holder["run"]
    saved = validator.save(ctx.scenario_dir("protocol-under-load") / "violations") if validator.violations else []
    summary = validator.summary()
    checks = [
        check("no schema or id violation", not validator.violations,
              f"{summary['messages']} messages checked; {summary['violations_by_kind']}"
              + (f"; saved {len(saved)} under {saved[0].parent}" if saved else "")),
        check("wire was seen", summary["responses"] >= result["ok"] > 0,
              f"{summary['responses']} responses for {result['ok']} completed operations"),
        max_error_rate(result, 0.01, EXPECTED),
    ]
    return {"scenario": "protocol-under-load", "status": verdict(checks), "checks": checks,
            "throughput_rps": result["throughput_rps"], "latency": result["latency"], "phases": {"open": result},
            "wire": summary, "violations": validator.violations[:5], "resources": resource_summary(sampler),
            "finished_at": time.time()}
