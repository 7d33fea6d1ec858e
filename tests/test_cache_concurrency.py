"""Zero staleness across processes: writers and readers share one database and one cache directory.

Writers keep rewriting rule bodies; every body names its own version. Readers
compose through their own ``TieredCache`` (so they hit L1, each other's L2
entries, and miss) and check each result against the store:

- fresh: every included rule is at least at the version the reader saw in the
  store just before asking (a stale composition would show an older one);
- consistent: each rule's text in the markdown is the body of the version the
  manifest names (an entry filed under the wrong key would break this).
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

from otel_mcp.cache import TieredCache
from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.compose.service import ComposeService
from otel_mcp.errors import VersionConflict
from otel_mcp.store.sqlite import RuleStore, StoreBusy

RULES = 8
WRITES_PER_WRITER = 40
READ_SECONDS = 20.0  # upper bound; readers stop as soon as the writers are done


def _body(rule_id: str, tag: str) -> str:
    return f"# {rule_id}\n\nbody {tag} " + "keep functions small and typed. " * 20


def _requests() -> list[ComposeRequest]:
    return [
        ComposeRequest(),
        ComposeRequest.from_args(context_files=["src/a.e0"]),
        ComposeRequest.from_args(context_files=["src/a.e1", "src/b.e2"]),
    ]


def _writer(db: str, index: int) -> None:
    store = RuleStore(db)
    for i in range(WRITES_PER_WRITER):
        rule_id = f"rule-{(i * 3 + index) % RULES}"
        for _ in range(50):
            try:
                current = store.get(rule_id)
                store.update(rule_id, current.version, {"body": _body(rule_id, f"w{index}-{i}")})
                break
            except (VersionConflict, StoreBusy):
                continue
    store.close()


def _versions(db: str) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT id, version FROM rules").fetchall())
    finally:
        conn.close()


def _reader(db: str, cache_dir: str, stop: str, out: str) -> None:
    store = RuleStore(db)
    cache = TieredCache(cache_dir, l1_bytes=256 * 1024)
    service = ComposeService(store, cache)
    checks, problems = 0, []
    deadline = time.monotonic() + READ_SECONDS
    while time.monotonic() < deadline:
        done = Path(stop).exists()
        for request in _requests():
            before = _versions(db)
            composition = service.compose(request)
            for entry in composition.included:
                if entry["version"] < before[entry["id"]]:
                    problems.append(f"stale {entry['id']}@{entry['version']} < {before[entry['id']]}")
                body = store.get(entry["id"], entry["version"]).body.strip("\n")
                marker = f"<!-- rule:{entry['id']}@{entry['version']} -->\n{body}\n"
                if marker not in composition.markdown:
                    problems.append(f"inconsistent {entry['id']}@{entry['version']}")
            checks += 1
        if done:
            break
    stats = cache.stats()
    cache.close()
    store.close()
    Path(out).write_text(json.dumps({"checks": checks, "problems": problems[:20], "stats": stats.to_dict()}))


def test_no_stale_composition_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "rules.db")
    store = RuleStore(db)
    for i in range(RULES):
        store.create(
            {
                "id": f"rule-{i}",
                "body": _body(f"rule-{i}", "initial"),
                "activation": "always" if i < 2 else "auto",
                "globs": [f"**/*.e{i % 3}"],
            }
        )
    store.close()
    ctx = multiprocessing.get_context("spawn")
    stop = str(tmp_path / "stop")
    outs = [str(tmp_path / f"reader{i}.json") for i in range(3)]
    readers = [ctx.Process(target=_reader, args=(db, str(tmp_path / "cache"), stop, o)) for o in outs]
    writers = [ctx.Process(target=_writer, args=(db, i)) for i in range(2)]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    Path(stop).touch()
    for p in readers:
        p.join(120)
        assert p.exitcode == 0
    results = [json.loads(Path(o).read_text()) for o in outs]
    for result in results:
        assert result["problems"] == []
        assert result["checks"] > 0
        assert result["stats"]["errors"] == 0
    total = {k: sum(r["stats"][k] for r in results) for k in ("l1_hits", "l2_hits", "misses")}
    assert total["l1_hits"] > 0 and total["misses"] > 0  # both tiers and misses were exercised

    # After the writers, every reader's view equals a fresh composition.
    final = RuleStore(db)
    with TieredCache(tmp_path / "cache") as cache:
        cached = ComposeService(final, cache)
        fresh = ComposeService(final)
        for request in _requests():
            assert cached.compose(request).to_dict() == fresh.compose(request).to_dict()
    final.close()
