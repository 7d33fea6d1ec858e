"""Optimistic concurrency under real contention: writer threads and writer processes, no lost update,
on both backends (on PostgreSQL the writer processes stand for replicas sharing the database)."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from otel_mcp.errors import RuleExists, VersionConflict
from otel_mcp.store import RuleStoreBase
from otel_mcp.store.backends import open_store

WRITERS = 8
ATTEMPTS = 25
pytestmark = pytest.mark.both_backends
BUSY_TIMEOUT = 60.0  # generous: contention must surface as conflicts, never as lock timeouts


def _write_loop(store: RuleStoreBase, name: str, attempts: int, start: Any) -> dict[str, Any]:
    """Read-modify-write ``attempts`` times; report successes, conflicts and anything else."""
    start.wait()
    ok: list[int] = []
    conflicts = 0
    others: list[str] = []
    for i in range(attempts):
        current = store.get("hot")
        try:
            rule = store.update("hot", current.version, {"body": f"{name} #{i}\n", "settings": {"by": name}})
            ok.append(rule.version)
        except VersionConflict as exc:
            conflicts += 1
            if exc.current <= current.version:
                others.append(f"conflict did not name a newer version: {exc}")
        except Exception as exc:
            others.append(f"{type(exc).__name__}: {exc}")
    return {"name": name, "ok": ok, "conflicts": conflicts, "others": others}


def _process_writer(path: str, name: str, attempts: int, start: Any, results: Any) -> None:
    store = open_store(path, timeout_s=BUSY_TIMEOUT)
    try:
        results.put(_write_loop(store, name, attempts, start))
    finally:
        store.close()


def _check_no_lost_update(store: RuleStoreBase, results: list[dict[str, Any]], writers: int, attempts: int) -> None:
    assert len(results) == writers
    assert [r["others"] for r in results] == [[] for _ in results], "every failure must be a VersionConflict"
    successes = [v for r in results for v in r["ok"]]
    assert sum(len(r["ok"]) + r["conflicts"] for r in results) == writers * attempts
    final = store.get("hot")
    assert final.version == len(successes) + 1
    assert sorted(successes) == list(range(2, final.version + 1)), "two writers got the same version"
    history = store.history("hot", limit=200)
    assert [e.version for e in history] == list(range(final.version, 0, -1)), "history has gaps"
    assert Counter(e.operation for e in history) == {"update": len(successes), "create": 1}
    # the last history entry is what is stored, and its writer really did write it
    assert history[0].etag == final.etag and final.spec.content_hash() == final.etag
    last_writer = final.settings["by"]
    assert final.version in next(r["ok"] for r in results if r["name"] == last_writer)


def test_threads_lose_no_update(store_db: Path | str) -> None:
    store = open_store(store_db, timeout_s=BUSY_TIMEOUT)
    try:
        store.create({"id": "hot", "body": "start\n"})
        start = threading.Barrier(WRITERS)
        results: list[dict[str, Any]] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            outcome = _write_loop(store, f"thread-{n}", ATTEMPTS, start)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        _check_no_lost_update(store, results, WRITERS, ATTEMPTS)
    finally:
        store.close()


@pytest.mark.slow
def test_processes_lose_no_update(store_db: Path | str) -> None:
    store = open_store(store_db, timeout_s=BUSY_TIMEOUT)
    try:
        store.create({"id": "hot", "body": "start\n"})
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(WRITERS)
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_process_writer, args=(str(store_db), f"proc-{n}", ATTEMPTS, start, queue))
            for n in range(WRITERS)
        ]
        for p in procs:
            p.start()
        results = [queue.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0] * WRITERS
        _check_no_lost_update(store, results, WRITERS, ATTEMPTS)
    finally:
        store.close()


def test_concurrent_creates_of_one_id_have_one_winner(store_db: Path | str) -> None:
    store = open_store(store_db, timeout_s=BUSY_TIMEOUT)
    start = threading.Barrier(WRITERS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        start.wait()
        try:
            store.create({"id": "once", "body": f"by {n}\n"})
            result = "created"
        except RuleExists:
            result = "exists"
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert sorted(outcomes) == ["created"] + ["exists"] * (WRITERS - 1)
        assert [e.version for e in store.history("once")] == [1]
    finally:
        store.close()


def test_readers_never_see_a_half_written_rule(store_db: Path | str) -> None:
    store = open_store(store_db, timeout_s=BUSY_TIMEOUT)
    store.create({"id": "hot", "body": "start\n", "tags": ["v1"]})
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            rule = store.get("hot")
            if rule.spec.content_hash() != rule.etag:
                problems.append(f"etag does not match content at version {rule.version}")
            if rule.body != f"body {rule.version}\n" and rule.version > 1:
                problems.append(f"body of another version at version {rule.version}")
            generation, rules = store.snapshot()
            if len(rules) != 1 or generation < rules[0].version - 1:
                problems.append("snapshot inconsistent with generation")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for version in range(1, 101):
            store.update("hot", version, {"body": f"body {version + 1}\n", "tags": [f"v{version + 1}"]})
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
        store.close()
    assert problems == []
