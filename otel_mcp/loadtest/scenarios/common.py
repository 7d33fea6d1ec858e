"""What every scenario shares: the run context, profiles, the seeded workload database, server figures."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_mcp.loadtest.loadgen import corpus
from otel_mcp.loadtest.loadgen.server import ProcessSampler, ServerProcess

# Knobs per profile. "ci" keeps the whole gate run around a minute on 2 busy cores;
# "full" is what docs/performance.md figures come from.
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "rules": 1000, "duration": 4.0, "sessions": 8, "stdio_procs": 2, "concurrency": 8, "rate": 20.0,
        "soak_duration": 24.0, "soak_rate": 10.0, "ramp_rates": [20, 40, 80, 120], "ramp_step": 3.0,
        "rounds": 3, "round_duration": 2.0, "updaters": 10, "update_rules": 3, "warm": 60,
    },
    "full": {
        "rules": 1000, "duration": 20.0, "sessions": 64, "stdio_procs": 4, "concurrency": 16, "rate": 60.0,
        "soak_duration": 300.0, "soak_rate": 40.0, "ramp_rates": [20, 40, 60, 80, 100, 130, 160, 200, 250],
        "ramp_step": 10.0, "rounds": 5, "round_duration": 8.0, "updaters": 32, "update_rules": 4, "warm": 200,
    },
}


@dataclass
class RunContext:
    profile: str = "ci"
    out_dir: Path = Path("perf-results")
    seed: int = 20240601
    progress: bool = True
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("OTEL_MCP_PERF_CACHE", "")
                                                         or Path.home() / ".cache" / "otel-mcp" / "perf"))

    @property
    def p(self) -> dict[str, Any]:
        return PROFILES[self.profile]

    def scenario_dir(self, name: str) -> Path:
        path = self.out_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def workload_db(ctx: RunContext, count: int | None = None) -> Path:
    """A fresh copy of the seeded database of ``count`` corpus rules (built once, cached by content)."""
    count = count or ctx.p["rules"]
    source = Path(corpus.__file__).read_bytes() + str(corpus.corpus_dir()).encode()
    tag = hashlib.sha256(source).hexdigest()[:12]
    cached = ctx.cache_dir / f"rules-{count}-{ctx.seed}-{tag}.db"
    if not cached.exists():
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        corpus.seed_database(tmp, corpus.build_rules(count, ctx.seed))
        _checkpoint(tmp)
        tmp.rename(cached)
    workdir = Path(tempfile.mkdtemp(prefix="otel-mcp-perf-db-"))
    target = workdir / "rules.db"
    shutil.copyfile(cached, target)
    return target


def _checkpoint(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


def cleanup_db(db: Path) -> None:
    shutil.rmtree(db.parent, ignore_errors=True)


_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|\+Inf|-Inf)\s*$")


def scrape(server: ServerProcess) -> dict[str, float]:
    """The server's own figures from its Prometheus endpoint (``/metrics``), one value per series.

    Keys are ``name{labels}`` as exposed; empty when the server has no such endpoint (telemetry off).
    """
    status, text = server.get("/metrics")
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC.match(line.strip())
        if match and not line.startswith("#"):
            try:
                out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
            except ValueError:
                continue
    return out


def _sum(delta: dict[str, float], name: str, *labels: str) -> float:
    """Sum of the series of metric ``name`` whose labels include every ``key="value"`` in ``labels``."""
    return sum(
        v for k, v in delta.items()
        if k.partition("{")[0] == name and all(label in k.partition("{")[2] for label in labels)
    )


def server_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Cache hit rate and DB latency read back from the server's own telemetry (``/metrics``)."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    figures: dict[str, Any] = {}
    requests = "otel_mcp_cache_requests_total"
    hits = _sum(delta, requests, 'result="hit"')
    misses = _sum(delta, requests, 'result="miss"', 'tier="l2"')  # an L2 miss is the overall miss
    if hits + misses > 0:
        figures["cache_hit_rate"] = round(hits / (hits + misses), 4)
    db = "db_client_operation_duration_seconds"
    count = _sum(delta, db + "_count")
    if count:
        figures["db_mean_ms"] = round(_sum(delta, db + "_sum") / count * 1000, 3)
        figures["db_operations"] = int(count)
    figures["metrics_scraped"] = len(after)
    return figures


def resource_summary(sampler: ProcessSampler) -> dict[str, Any]:
    return {"summary": sampler.summary(), "samples": sampler.samples}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


Scenario = Callable[[RunContext], dict[str, Any]]


def verdict(checks: list[dict[str, Any]]) -> str:
    return "pass" if all(c["ok"] for c in checks) else "fail"


def check(name: str, ok: bool, detail: str = "") -> dict[str, Any]:
    return {"name": name, "ok": bool(ok), "detail": detail}


def max_error_rate(result: dict[str, Any], limit: float = 0.01, allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    """A check that unexpected errors stay below ``limit`` of the requests sent."""
    bad = sum(n for k, n in result["errors"].items() if k not in allowed)
    sent = max(1, result["sent"])
    return check("error rate", bad / sent <= limit,
                 f"{bad} unexpected error(s) of {sent} ({bad / sent:.2%}; limit {limit:.0%}): {result['errors']}")
