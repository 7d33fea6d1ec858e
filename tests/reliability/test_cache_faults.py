"""Disk-cache faults with the real HTTP server: the composition is served from the database, the error is
counted (``cache.errors`` in ``otel-mcp://stats``), the cache rebuilds, and the log is not flooded.

- the cache directory deleted while the server runs;
- the L2 database file corrupted (garbage over it) between two runs, and while the server runs;
- disk full: the cache directory on a 1 MiB tmpfs, filled up;
- read-only: the same tmpfs remounted read-only.

tmpfs needs root (``mount``); without it those two tests skip with the reason.
"""

from __future__ import annotations

import ast
import contextlib
import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from relwire import HttpProc, RawHttp, start_http

RULES = 12
BODY_BYTES = 12_000  # per rule: a few compositions fill a 1 MiB disk


def body(i: int) -> str:
    rng = random.Random(i)
    words = ["alpha", "beta", "gamma", "delta", "typing", "tests", "async", "docs", "lint", "ruff", "mypy"]
    return f"# rule {i}\n" + " ".join(rng.choice(words) + str(rng.randrange(10**6)) for _ in range(BODY_BYTES // 12))


class Session:
    def __init__(self, server: HttpProc) -> None:
        self.raw = RawHttp(server.port)
        self.raw.open_session()
        self.next_id = 100

    def call(self, tool: str, **arguments: Any) -> Any:
        self.next_id += 1
        reply = self.raw.post({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                               "params": {"name": tool, "arguments": arguments}})
        result = reply.messages[-1]["result"]
        assert not result.get("isError"), result
        return result

    def compose(self, ids: list[str]) -> str:
        return str(self.call("compose_rules", rule_ids=ids)["content"][0]["text"])

    def cache(self) -> dict[str, Any]:
        self.next_id += 1
        reply = self.raw.post({"jsonrpc": "2.0", "id": self.next_id, "method": "resources/read",
                               "params": {"uri": "otel-mcp://stats"}})
        return dict(json.loads(reply.messages[-1]["result"]["contents"][0]["text"])["cache"])


REQUESTS = [[f"r{i}", f"r{(i + 1) % RULES}"] for i in range(RULES)]


def expected(ids: list[str]) -> list[str]:
    return [body(int(rule_id[1:])) for rule_id in ids]


def check_all(session: Session) -> None:
    """Every request answered, with every body it should hold (straight from the database)."""
    for ids in REQUESTS:
        markdown = session.compose(ids)
        for text in expected(ids):
            assert text in markdown


def seeded(tmp: Path, cache_dir: Path) -> tuple[HttpProc, Session]:
    server = start_http(tmp, env={"OTEL_MCP_CACHE_DIR": str(cache_dir)})
    session = Session(server)
    for i in range(RULES):
        session.call("create_rule", id=f"r{i}", body=body(i))
    return server, session


def restart(server: HttpProc, tmp: Path, cache_dir: Path) -> tuple[HttpProc, Session]:
    assert server.stop() == 0, server.output()[-2000:]
    again = start_http(tmp, env={"OTEL_MCP_CACHE_DIR": str(cache_dir)}, db=server.db)
    return again, Session(again)


def assert_served_from_l2(server: HttpProc, session: Session) -> None:
    """After a restart (L1 empty), the requests came from L2 (directly or through the warm-up), not composed."""
    stats = session.cache()
    lines = [line for line in server.output().splitlines() if "cache warm-up: {" in line]
    warmed = [ast.literal_eval(line.split("cache warm-up: ", 1)[1]) for line in lines]
    from_l2 = sum(w.get("from_l2", 0) for w in warmed)
    assert stats["l2_hits"] + from_l2 > 0 and stats["misses"] < len(REQUESTS), (stats, warmed)


def failure_lines(log: str) -> int:
    return sum(1 for line in log.splitlines() if "otel_mcp.cache" in line and " failed for " in line)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def test_cache_directory_deleted_while_running(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    server, session = seeded(tmp_path, cache_dir)
    try:
        check_all(session)
        assert (cache_dir / "cache.db").exists()
        shutil.rmtree(cache_dir)
        session.call("update_rule", id="r0", body=body(0), expected_version=1)  # new generation: L1 misses
        check_all(session)
        stats = session.cache()
        assert stats["errors"] >= 1, stats  # the lost directory is counted
        assert (cache_dir / "cache.db").exists()  # rebuilt
    finally:
        server, session = restart(server, tmp_path, cache_dir)
    try:
        check_all(session)
        assert_served_from_l2(server, session)  # the rebuilt L2 serves the next process
    finally:
        assert server.stop() == 0


def damage(database: Path) -> None:
    """Garbage over every page but the SQLite header, written in place (the same file, as a disk fault would)."""
    data = bytearray(database.read_bytes())
    rng = random.Random(7)
    for offset in range(100, len(data), 512):
        data[offset:offset + 64] = rng.randbytes(64)
    with database.open("r+b") as out:
        out.write(bytes(data))


def test_corrupted_cache_database(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    server, session = seeded(tmp_path, cache_dir)
    check_all(session)
    assert server.stop() == 0
    damage(cache_dir / "cache.db")
    for suffix in ("-wal", "-shm"):
        (cache_dir / f"cache.db{suffix}").unlink(missing_ok=True)
    server = start_http(tmp_path, env={"OTEL_MCP_CACHE_DIR": str(cache_dir)}, db=server.db)
    session = Session(server)
    try:
        check_all(session)
        assert session.cache()["errors"] >= 1
        assert failure_lines(server.output()) <= 6, server.output()[-3000:]
    finally:
        server, session = restart(server, tmp_path, cache_dir)
    try:
        check_all(session)
        assert_served_from_l2(server, session)  # rebuilt
    finally:
        assert server.stop() == 0


def test_cache_database_corrupted_while_running_is_moved_aside_at_the_first_failure(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    server, session = seeded(tmp_path, cache_dir)
    try:
        check_all(session)
        for name in ("cache.db", "cache.db-wal"):  # its pages may still be in the write-ahead log
            damage(cache_dir / name)
        session.call("update_rule", id="r0", body=body(0), expected_version=1)  # new keys: L1 misses, L2 reads
        check_all(session)  # still served, from the database
        errors = session.cache()["errors"]  # the statistics read the damaged pages, if nothing before did
        assert errors == 1, session.cache()  # the first failure moved the file aside: no second one
        assert list(cache_dir.glob("cache.db.corrupt-*")), sorted(p.name for p in cache_dir.iterdir())
        session.call("update_rule", id="r1", body=body(1), expected_version=1)
        check_all(session)
        assert session.cache()["errors"] == errors  # the fresh L2 takes the new compositions without failing
    finally:
        server, session = restart(server, tmp_path, cache_dir)
    try:
        check_all(session)
        assert_served_from_l2(server, session)
    finally:
        assert server.stop() == 0, server.output()[-2000:]


def test_disk_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small") as disk:
        cache_dir = disk / "cache"
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 600_000)
        server, session = seeded(tmp_path / "srv", cache_dir)
        try:
            # Fill the rest with compositions, then keep going: every put now fails for want of space.
            for rounds in range(4):
                session.call("update_rule", id="r0", body=body(0) + " " * rounds, expected_version=rounds + 1)
                check_all(session)
            stats = session.cache()
            assert stats["errors"] >= 1, stats
            assert failure_lines(server.output()) <= 6, server.output()[-3000:]  # no flood
            filler.unlink()  # space again: later puts succeed without a restart
            session.call("update_rule", id="r0", body=body(0), expected_version=5)
            check_all(session)
        finally:
            server, session = restart(server, tmp_path / "srv", cache_dir)
        try:
            check_all(session)
            assert_served_from_l2(server, session)
        finally:
            assert server.stop() == 0


def test_read_only_cache_directory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", size="16m") as disk:
        cache_dir = disk / "cache"
        server, session = seeded(tmp_path / "srv", cache_dir)
        check_all(session)
        assert server.stop() == 0
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, timeout=30)
        server = start_http(tmp_path / "srv", env={"OTEL_MCP_CACHE_DIR": str(cache_dir)}, db=server.db)
        session = Session(server)
        try:
            check_all(session)
            session.call("update_rule", id="r1", body=body(1), expected_version=1)
            check_all(session)
            assert session.cache()["errors"] >= 1
            assert failure_lines(server.output()) <= 8, server.output()[-3000:]
        finally:
            assert server.stop() == 0
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True, timeout=30)
