"""``concurrent-updates``: many clients update the same few rules with optimistic concurrency.

Each client (HTTP sessions and stdio server processes, all on one database)
loops: ``get_rule`` -> ``update_rule(expected_version=v)`` with a body carrying
a unique marker -> every third round ``compose_rules(rule_ids=[id])``. The
client-side log records every acknowledged write (rule, version, marker),
every conflict returned, and for every read the highest version already
acknowledged to *any* client when the read was sent.

Verified at the end, from the database's ``rule_versions`` history table:

- versions of each rule are contiguous 1..N and every acknowledged write is the
  version it was acknowledged as, with its own marker (no lost update, no
  write attributed to the wrong client);
- every update written to history was acknowledged to some client, and every
  update attempt got exactly one answer: a new version or a conflict error
  naming the current version (every conflict reported to its client);
- each conflict was real: the expected version was already superseded;
- no ``get_rule`` or composition sent after a write was acknowledged reflected
  the pre-write state (its version >= the acknowledged one).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import defaultdict
from typing import Any

import anyio
from mcp import Client

from otel_mcp.loadtest.loadgen.engine import OpError, PoolConfig, call, closed_loop, open_pool
from otel_mcp.loadtest.loadgen.server import ProcessSampler, ServerProcess
from otel_mcp.loadtest.scenarios.common import RunContext, check, cleanup_db, resource_summary, verdict, workload_db
from otel_mcp.store import RuleStore
from otel_mcp.store.base import HistoryEntry, RuleStoreBase

CONFLICT = re.compile(r"expected version (\d+), current version is (\d+)")


class Ledger:
    """What the clients saw, in order."""

    def __init__(self, rules: list[str]) -> None:
        self.acked: dict[str, dict[int, str]] = {r: {} for r in rules}  # rule -> version -> marker
        self.max_acked: dict[str, int] = dict.fromkeys(rules, 1)
        self.conflicts: list[dict[str, Any]] = []
        self.attempts = 0
        self.other_outcomes: list[str] = []
        self.stale: list[dict[str, Any]] = []
        self.reads = 0
        self.compositions = 0


def make_op(ledger: Ledger, rules: list[str]) -> Any:
    counter = [0]

    async def op(client: Client, rng: random.Random) -> None:
        counter[0] += 1
        seq = counter[0]
        rule_id = rng.choice(rules)
        floor = ledger.max_acked[rule_id]
        current = await call(client, "get_rule", {"id": rule_id})
        ledger.reads += 1
        if current["version"] < floor:
            ledger.stale.append({"op": "get_rule", "rule": rule_id, "seen": current["version"], "acked": floor})
        marker = f"w{seq}-{rng.randrange(10**9)}"
        ledger.attempts += 1
        try:
            written = await call(client, "update_rule", {
                "id": rule_id, "expected_version": current["version"],
                "body": f"# {rule_id}\n\nWritten by {marker}. Keep functions short and names precise.\n"})
        except OpError as exc:
            if exc.kind == "conflict":
                match = CONFLICT.search(str(exc))
                ledger.conflicts.append({"rule": rule_id, "expected": current["version"], "marker": marker,
                                         "current": int(match.group(2)) if match else None})
            else:
                ledger.other_outcomes.append(exc.kind)
            raise
        except BaseException as exc:
            ledger.other_outcomes.append(type(exc).__name__)
            raise
        version = int(written["version"])
        if version in ledger.acked[rule_id]:
            ledger.stale.append({"op": "update_rule", "rule": rule_id, "duplicate_version": version})
        ledger.acked[rule_id][version] = marker
        ledger.max_acked[rule_id] = max(ledger.max_acked[rule_id], version)
        if seq % 3 == 0:
            floor = ledger.max_acked[rule_id]
            composed = await call(client, "compose_rules", {"rule_ids": [rule_id]})
            ledger.compositions += 1
            included = {i["id"]: i["version"] for i in composed["included"]}
            seen = included.get(rule_id, 0)
            if seen < floor:
                ledger.stale.append({"op": "compose_rules", "rule": rule_id, "seen": seen, "acked": floor})

    return op


def verify(store: RuleStoreBase, ledger: Ledger) -> list[dict[str, Any]]:
    """The checks listed in the module's docstring, from the store's history (any backend)."""
    problems: dict[str, list[str]] = defaultdict(list)
    written_updates = 0
    history: dict[str, list[HistoryEntry]] = defaultdict(list)
    for entry in store.full_history():
        history[entry.rule_id].append(entry)
    for rule_id, acked in ledger.acked.items():
        entries = history[rule_id]
        versions = [e.version for e in entries]
        if versions != list(range(1, len(versions) + 1)):
            problems["contiguous"].append(f"{rule_id}: versions {versions[:5]}..{versions[-5:]}")
        bodies = {e.version: e.spec.body for e in entries}
        updates = [e.version for e in entries if e.operation == "update"]
        written_updates += len(updates)
        for version, marker in acked.items():
            if marker not in bodies.get(version, ""):
                problems["lost"].append(f"{rule_id}@{version} ({marker}) not in history")
        unacked = [v for v in updates if v not in acked]
        if unacked:
            problems["unacked"].append(f"{rule_id}: versions {unacked[:10]} written but never acknowledged")
        current = store.get(rule_id).version
        if current != max(versions):
            problems["current"].append(f"{rule_id}: current {current} vs history max {max(versions)}")
        for c in (c for c in ledger.conflicts if c["rule"] == rule_id):
            if c["expected"] >= max(versions) or (c["current"] is not None and c["current"] <= c["expected"]):
                problems["phantom_conflict"].append(f"{rule_id}: {c}")
    acked_total = sum(len(a) for a in ledger.acked.values())
    answered = acked_total + len(ledger.conflicts)
    return [
        check("no lost update", not problems["lost"] and not problems["contiguous"] and not problems["current"],
              f"{acked_total} acknowledged writes all in history"
              + "; ".join(problems["lost"][:5] + problems["contiguous"][:3] + problems["current"][:3])),
        check("every write acknowledged", not problems["unacked"] and written_updates == acked_total,
              f"{written_updates} updates in history, {acked_total} acknowledged; "
              + "; ".join(problems["unacked"][:3])),
        check("every attempt answered", answered == ledger.attempts and not ledger.other_outcomes,
              f"{ledger.attempts} attempts = {acked_total} ok + {len(ledger.conflicts)} conflicts; "
              f"other outcomes {ledger.other_outcomes[:5]}"),
        check("conflicts were real", not problems["phantom_conflict"],
              f"{len(ledger.conflicts)} conflicts; " + "; ".join(problems["phantom_conflict"][:3])),
        check("no stale read after a write", not ledger.stale,
              f"{ledger.reads} reads, {ledger.compositions} compositions checked; {ledger.stale[:3]}"),
        check("contention happened", len(ledger.conflicts) > 0 and acked_total > 0,
              f"{acked_total} writes, {len(ledger.conflicts)} conflicts"),
    ]


def concurrent_updates(ctx: RunContext) -> dict[str, Any]:
    """Optimistic-concurrency updates on a few hot rules; verified from the database history."""
    p = ctx.p
    db = workload_db(ctx, p["rules"])
    rules = [f"hot-rule-{i}" for i in range(p["update_rules"])]
    store = RuleStore(db)
    for rule_id in rules:
        store.create({"id": rule_id, "body": f"# {rule_id}\n\nInitial text.\n", "activation": "manual"})
    store.close()
    ledger = Ledger(rules)
    stdio = min(p["stdio_procs"], max(0, p["updaters"] - 2))
    server = ServerProcess(db=db, env={"OTEL_SDK_DISABLED": "true"}).start()
    sampler = ProcessSampler([server.pid]).start()
    holder: dict[str, Any] = {}
    try:
        op = make_op(ledger, rules)
        holder["op"] = op

        async def main_shared() -> None:
            config = PoolConfig(url=server.url, http_sessions=p["updaters"] - stdio, stdio_procs=stdio, stdio_db=db,
                                stdio_env={"OTEL_SDK_DISABLED": "true"})
            async with open_pool(config) as pool:
                holder["run"] = await closed_loop(pool, lambda rng: ("get+update", op), concurrency=p["updaters"],
                                                  duration=p["duration"], seed=ctx.seed,
                                                  label="concurrent-updates", progress=ctx.progress)

        anyio.run(main_shared)
    finally:
        sampler.stop()
        server.stop()
    store = RuleStore(db)
    try:
        checks = verify(store, ledger)
    finally:
        store.close()
        cleanup_db(db)
    result = holder["run"]
    unexpected = {k: v for k, v in result["errors"].items() if k != "conflict"}
    checks.append(check("no unexpected errors", not unexpected, str(unexpected)))
    out = ctx.scenario_dir("concurrent-updates")
    (out / "ledger.json").write_text(json.dumps({"conflicts": ledger.conflicts[:200], "stale": ledger.stale,
                                                 "acked": ledger.acked}, indent=1, default=str))
    return {"scenario": "concurrent-updates", "status": verdict(checks), "checks": checks,
            "throughput_rps": result["throughput_rps"], "latency": result["latency"], "phases": {"closed": result},
            "writes": sum(len(a) for a in ledger.acked.values()), "conflicts": len(ledger.conflicts),
            "resources": resource_summary(sampler), "finished_at": time.time()}
