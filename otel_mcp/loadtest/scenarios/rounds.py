"""Paired interleaved rounds: every arm loaded in turn, round after round, so that what slows the machine
for a while (a noisy neighbour, a GC, the page cache) weighs on every arm alike; figures are medians of rounds.

Usage::

    rows = paired_rounds(ctx, {"a": (PoolConfig(url=a), picker), "b": (PoolConfig(url=b), picker)}, warm={"a"})
    median_of(rows["a"], "p99_ms")
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from typing import Any

import anyio

from otel_mcp.loadtest.loadgen.engine import PoolConfig, SessionPool, call, closed_loop, open_pool
from otel_mcp.loadtest.scenarios.common import RunContext
from otel_mcp.loadtest.scenarios.compose import HOT_DISTINCT, compose_args

# Measures something around one arm's round: entered before the round, its dict merged into the round's result.
Around = Callable[[str], AbstractContextManager[dict[str, Any]]]


async def warm_compositions(pool: SessionPool, count: int = HOT_DISTINCT) -> None:
    """Compose the ``count`` hottest requests once, so the rounds measure a warm cache."""
    for rank in range(count):
        async with pool.borrow() as client:
            await call(client, "compose_rules", compose_args(rank))


def paired_rounds(ctx: RunContext, arms: dict[str, tuple[PoolConfig, Any]], warm: set[str], *,
                  rounds: int | None = None, around: Around | None = None) -> dict[str, list[dict[str, Any]]]:
    """Closed-loop rounds over each arm in turn (``rounds``, default the profile's); each arm's per-round results.

    :param around: measures each round (e.g. CPU seconds of the arm's processes); its figures join the result
    """
    p = ctx.p
    count = rounds or p["rounds"]
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}

    async def main() -> None:
        pools: dict[str, SessionPool] = {}
        async with AsyncExitStack() as stack:
            for name, (config, _) in arms.items():
                pools[name] = await stack.enter_async_context(open_pool(config))
                if name in warm:
                    await warm_compositions(pools[name], p["warm"])
            for r in range(count):
                for name, (_, picker) in arms.items():
                    with (around(name) if around else nullcontext({})) as figures:
                        row = await closed_loop(
                            pools[name], picker, concurrency=p["concurrency"], duration=p["round_duration"],
                            seed=ctx.seed + r, label=f"{name} round {r + 1}/{count}", progress=ctx.progress)
                    out[name].append({**row, **figures})

    anyio.run(main)
    return out


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    """The median over rounds of ``throughput_rps`` (``key="rps"``), a latency percentile, or a figure of ``around``."""
    values = [r["throughput_rps"] if key == "rps" else r["latency"][key] if key in r["latency"] else r[key]
              for r in rows]
    return round(statistics.median(values), 3) if values else 0.0
