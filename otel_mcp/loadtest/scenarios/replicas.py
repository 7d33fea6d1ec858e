"""``replicas``: the mixed workload against 1, 2 and 3 replicas on PostgreSQL, and 1 on SQLite, in one run.

Run on request only (``otel-mcp perf run replicas``): it starts its own throwaway PostgreSQL (Debian's
package, as the tests do). Four arms, each its own database seeded with the same corpus rules: ``sqlite x1``
(one server on a SQLite file) and ``postgres xN`` (N server processes on one PostgreSQL database). The load
generator spreads its HTTP sessions over an arm's replicas in turn, as a round-robin load balancer does for
sessionless clients (no balancer in the path: its cost is not the replicas'). The workload is ``mixed``'s
(90 % reads, 10 % writes, conflicts expected). Arms are loaded in paired interleaved closed-loop rounds
(``ROUNDS``, same concurrency); figures are medians over rounds, ratios medians of per-round ratios.

Per arm: throughput, p50/p99, each replica's CPU, PostgreSQL's and the load generator's (% of one core during
the arm's rounds), and DB statements per operation: on PostgreSQL each is a round trip (``pg_stat_statements``,
server side), on SQLite an in-process call (the servers' own ``db.client.operation.duration`` count, from
``/metrics``).

Correctness under load, checked per arm: every acknowledged write is in the history (rows added = writes
acknowledged, give or take the ones whose answer timed out), and after the rounds no replica composes a rule
older than a write another replica acknowledged.

Pinning: the load generator on the first core, PostgreSQL and the replicas on the others (``sched_setaffinity``
before they start; children inherit it). On 2 cores the servers share one, so more replicas cannot add
throughput here: the scenario shows the cost of each replica and of the database round trips; with more
cores than replicas, throughput grows with the replicas until PostgreSQL's core or the writers' lock limits it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import psycopg

from otel_mcp.loadtest.loadgen.engine import PoolConfig, call, pick_weighted
from otel_mcp.loadtest.loadgen.postgres import PostgresServer
from otel_mcp.loadtest.loadgen.server import IN_PROCESS_TELEMETRY, ServerProcess
from otel_mcp.loadtest.scenarios.common import (
    RunContext,
    check,
    cleanup_db,
    scrape,
    server_figures,
    verdict,
    workload_db,
)
from otel_mcp.loadtest.scenarios.mixed import EXPECTED, build_ops, rule_ids
from otel_mcp.loadtest.scenarios.rounds import median_of, paired_rounds
from otel_mcp.store import RuleStore
from otel_mcp.store.backends import open_store
from otel_mcp.store.base import RuleStoreBase

ROUNDS = 10
ARMS = (("sqlite x1", 1), ("postgres x1", 1), ("postgres x2", 2), ("postgres x3", 3))
BASE_ARM = "postgres x1"
WRITE_OPS = ("update_rule", "create_rule")  # operations that add one history row when acknowledged
PG_SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_utility": "on"}
_STATEMENTS_SQL = ("SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                   " WHERE d.datname = %s")


class Arm:
    """One arm's database and replicas."""

    def __init__(self, name: str, db: Path | str, replicas: int) -> None:
        self.name = name
        self.db = db
        self.servers = [ServerProcess(db=db, env=IN_PROCESS_TELEMETRY) for _ in range(replicas)]

    @property
    def on_postgres(self) -> bool:
        return not isinstance(self.db, Path)

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()



def _history_counts(arms: dict[str, Arm]) -> dict[str, int]:
    """The rows of each arm's history."""
    counts = {}
    for name, arm in arms.items():
        store = open_store(arm.db)
        try:
            counts[name] = len(store.full_history())
        finally:
            store.close()
    return counts


def _cpu_seconds(processes: list[psutil.Process]) -> list[float]:
    seconds = []
    for process in processes:
        try:
            times = process.cpu_times()
            seconds.append(times.user + times.system)
        except psutil.NoSuchProcess:
            seconds.append(0.0)
    return seconds


class Meter:
    """Measures each round of an arm: CPU of its replicas and of PostgreSQL, and its DB statements."""

    def __init__(self, arms: dict[str, Arm], postgres: PostgresServer) -> None:
        self.arms = arms
        self.postgres = postgres
        self._admin = psycopg.connect(postgres.dsn(), autocommit=True)
        self._admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self._loadgen = psutil.Process()  # the SDK clients: on 2 cores, often the first to saturate

    def close(self) -> None:
        self._admin.close()

    def _postgres_processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(int((self.postgres.data / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]

    def _statements(self, arm: Arm) -> float:
        if arm.on_postgres:
            row = self._admin.execute(_STATEMENTS_SQL, (str(arm.db).rsplit("/", 1)[1],)).fetchone()
            return float(row[0]) if row else 0.0
        return float(sum(server_figures({}, scrape(s)).get("db_operations", 0) for s in arm.servers))

    @contextlib.contextmanager
    def round(self, name: str) -> Iterator[dict[str, Any]]:
        arm = self.arms[name]
        replicas = [psutil.Process(s.pid) for s in arm.servers]
        database = self._postgres_processes() if arm.on_postgres else []
        figures: dict[str, Any] = {}
        statements, replica_cpu, db_cpu = self._statements(arm), _cpu_seconds(replicas), sum(_cpu_seconds(database))
        loadgen_cpu = _cpu_seconds([self._loadgen])[0]
        t0 = time.monotonic()
        yield figures
        wall = time.monotonic() - t0
        figures["cpu_pct_per_replica"] = [round((after - before) / wall * 100, 1)
                                          for before, after in zip(replica_cpu, _cpu_seconds(replicas), strict=True)]
        figures["db_cpu_pct"] = round((sum(_cpu_seconds(database)) - db_cpu) / wall * 100, 1) if database else 0.0
        figures["db_statements"] = self._statements(arm) - statements
        figures["loadgen_cpu_pct"] = round((_cpu_seconds([self._loadgen])[0] - loadgen_cpu) / wall * 100, 1)


def _seed_postgres(postgres: PostgresServer, source: RuleStoreBase) -> str:
    url = postgres.create_database()
    target = open_store(url)
    try:
        target.restore_history(source.full_history())
    finally:
        target.close()
    return url


@contextlib.contextmanager
def _affinity(cores: set[int]) -> Iterator[None]:
    """Run (and start children) on ``cores`` inside the block."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def _split_cores() -> tuple[set[int], set[int]]:
    """(load generator's cores, servers' cores): the first core, then the others (all of them on one core)."""
    cores = sorted(os.sched_getaffinity(0))
    return ({cores[0]}, set(cores[1:])) if len(cores) > 1 else (set(cores), set(cores))


def _acknowledged_writes(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(writes acknowledged, operations whose outcome is unknown: timed out or cut) over an arm's rounds."""
    acked = sum(r["by_op"].get(op, {}).get("ok", 0) for r in rows for op in WRITE_OPS)
    unknown = sum(n for r in rows for op in WRITE_OPS for kind, n in r["by_op"].get(op, {}).get("errors", {}).items()
                  if kind == "timeout" or kind.startswith("transport"))
    return acked, unknown


async def _stale_after_write(arm: Arm, rule_id: str) -> list[str]:
    """Write ``rule_id`` on the first replica, compose it on every replica: the replicas that composed older."""
    from mcp import Client

    stale = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(s.url)) for s in arm.servers]
        current = await call(clients[0], "get_rule", {"id": rule_id})
        written = await call(clients[0], "update_rule", {"id": rule_id, "expected_version": current["version"],
                                                         "description": f"checked after the {arm.name} rounds"})
        for index, client in enumerate(clients):
            composed = await call(client, "compose_rules", {"rule_ids": [rule_id]})
            seen = {i["id"]: i["version"] for i in composed["included"]}.get(rule_id, 0)
            if seen != written["version"]:
                stale.append(f"replica {index + 1} composed {rule_id}@{seen}, acknowledged @{written['version']}")
    return stale


def _arm_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    operations = [r["ok"] + r["error_count"] for r in rows]
    per_replica = list(zip(*(r["cpu_pct_per_replica"] for r in rows), strict=True))
    return {
        "throughput_rps": median_of(rows, "rps"), "p50_ms": median_of(rows, "p50_ms"),
        "p99_ms": median_of(rows, "p99_ms"),
        "throughput_spread_rps": [min(r["throughput_rps"] for r in rows), max(r["throughput_rps"] for r in rows)],
        "cpu_pct_per_replica": [round(statistics.median(cpu), 1) for cpu in per_replica],
        "db_cpu_pct": median_of(rows, "db_cpu_pct"),
        "loadgen_cpu_pct": median_of(rows, "loadgen_cpu_pct"),
        "db_statements_per_op": round(statistics.median(r["db_statements"] / max(1, n)
                                                        for r, n in zip(rows, operations, strict=True)), 2),
        "rounds": rows,
    }


def _paired_ratio(rows: dict[str, list[dict[str, Any]]], arm: str, base: str, key: str) -> float:
    def value(row: dict[str, Any]) -> float:
        return float(row["throughput_rps"] if key == "rps" else row["latency"][key])

    ratios = [value(a) / value(b) for a, b in zip(rows[arm], rows[base], strict=True) if value(b)]
    return round(statistics.median(ratios), 3) if ratios else 0.0


def replicas(ctx: RunContext) -> dict[str, Any]:
    """Mixed workload: 1, 2, 3 replicas on PostgreSQL vs 1 on SQLite (throughput, p99, CPU, DB round trips)."""
    p = ctx.p
    sqlite_db = workload_db(ctx)
    ids, small = rule_ids(sqlite_db)
    loadgen_cores, server_cores = _split_cores()
    arms: dict[str, Arm] = {}
    postgres: PostgresServer | None = None
    meter: Meter | None = None
    try:
        with _affinity(server_cores):  # PostgreSQL and every replica start (and stay) on the servers' cores
            postgres = PostgresServer(settings=PG_SETTINGS)
            postgres.start()
            source = RuleStore(sqlite_db)
            try:
                for name, count in ARMS:
                    db: Path | str = sqlite_db if name.startswith("sqlite") else _seed_postgres(postgres, source)
                    arms[name] = Arm(name, db, count)
            finally:
                source.close()
            for arm in arms.values():
                arm.start()
        meter = Meter(arms, postgres)
        before = _history_counts(arms)
        with _affinity(loadgen_cores):
            rows = paired_rounds(ctx, {
                name: (PoolConfig(urls=[s.url for s in arm.servers], http_sessions=p["concurrency"]),
                       pick_weighted(build_ops(ids, small, ctx.seed + index)))
                for index, (name, arm) in enumerate(arms.items())
            }, warm=set(arms), rounds=ROUNDS, around=meter.round)
            after = _history_counts(arms)
            stale = {name: anyio.run(_stale_after_write, arm, small[0]) for name, arm in arms.items()}
    finally:
        if meter is not None:
            meter.close()
        for arm in arms.values():
            arm.stop()
        if postgres is not None:
            postgres.remove()
        cleanup_db(sqlite_db)

    checks = []
    for name, arm in arms.items():
        acked, unknown = _acknowledged_writes(rows[name])
        written = after[name] - before[name]
        checks.append(check(f"{name}: every acknowledged write in the history", acked <= written <= acked + unknown,
                            f"{written} history rows added, {acked} writes acknowledged, {unknown} unanswered"))
        sent = sum(r["sent"] for r in rows[name])
        unexpected = sum(n for r in rows[name] for kind, n in r["errors"].items() if kind not in EXPECTED)
        checks.append(check(f"{name}: unexpected errors under 1 %", unexpected <= 0.01 * sent,
                            f"{unexpected} of {sent}"))
        checks.append(check(f"{name}: no stale composition after a write", not stale[name],
                            "; ".join(stale[name]) or f"{len(arm.servers)} replica(s) composed the new version"))
    summary = {name: _arm_summary(r) for name, r in rows.items()}
    ratios = {}
    for name in arms:
        if name != BASE_ARM:
            key = name.replace(" ", "_")
            ratios[f"{key}_vs_{BASE_ARM.replace(' ', '_')}_throughput"] = _paired_ratio(rows, name, BASE_ARM, "rps")
            ratios[f"{key}_vs_{BASE_ARM.replace(' ', '_')}_p99"] = _paired_ratio(rows, name, BASE_ARM, "p99_ms")
    return {"scenario": "replicas", "status": verdict(checks), "checks": checks, "arms": summary, "ratios": ratios,
            "rounds": ROUNDS, "concurrency": p["concurrency"], "round_duration_s": p["round_duration"],
            "cores": {"load_generator": sorted(loadgen_cores), "servers": sorted(server_cores)},
            "throughput_rps": summary[BASE_ARM]["throughput_rps"], "latency": rows[BASE_ARM][-1]["latency"],
            "finished_at": time.time()}
