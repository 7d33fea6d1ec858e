"""No traceback, always a reason: what a hostile client or a broken disk causes is a clear error result.

Against the real server process: versions SQLite cannot hold, names longer than a file name may be, a
database that cannot be written (the server runs under ``prlimit --fsize``, so a write fails with
"database or disk is full" as on a full disk), and warnings a client can repeat at will (a bad Host
header, a missing token), which reach the log at most once a minute.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from relwire import HttpProc, RawHttp, assert_no_traceback, start_http

from otel_mcp.store import RuleStore
from otel_mcp.throttle import Throttle, ThrottleFilter

BIG = (2**63, 2**64, 10**30)


def text_of(result: object) -> str:
    return "\n".join(getattr(block, "text", "") for block in getattr(result, "content", []))


@asynccontextmanager
async def served(tmp_path: Path, **start: Any) -> AsyncIterator[tuple[HttpProc, Client]]:
    """A real server and a connected official client; afterwards, its log must hold no traceback."""
    server = start_http(tmp_path, **start)
    try:
        async with Client(f"http://127.0.0.1:{server.port}/mcp") as client:
            yield server, client
    finally:
        server.stop()
    assert_no_traceback(server.output())


@pytest.mark.anyio
async def test_versions_beyond_sqlite_integers_are_not_found(tmp_path: Path) -> None:
    async with served(tmp_path) as (server, client):
        assert not (await client.call_tool("create_rule", {"id": "a", "body": "x"})).is_error
        for version in BIG:
            for tool, args in (("get_rule", {"id": "a", "version": version}),
                               ("rollback_rule", {"id": "a", "to_version": version})):
                result = await client.call_tool(tool, args)
                assert result.is_error and f"version {version} of rule 'a' does not exist" in text_of(result)
            with pytest.raises(Exception, match=f"version {version} of rule 'a' does not exist"):
                await client.read_resource(f"rules://a@{version}")
    assert "OverflowError" not in server.output()


@pytest.mark.anyio
async def test_names_longer_than_a_file_name_are_named(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, client):
        assert not (await client.call_tool("create_rule", {"id": "a", "body": "x"})).is_error
        for tool in ("import_rules", "export_rules"):
            for directory in ("x" * 300, "é" * 200):  # 300 and 400 bytes
                result = await client.call_tool(tool, {"directory": directory})
                assert result.is_error and "ENAMETOOLONG" in text_of(result), text_of(result)


@pytest.mark.anyio
async def test_an_unwritable_database_is_named_and_nothing_changes(tmp_path: Path) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is needed to limit the server's file size")
    db = tmp_path / "rules.db"
    store = RuleStore(db)
    store.create({"id": "kept", "body": "stays readable"})
    store.close()
    limit = db.stat().st_size + 64 * 1024
    limited = {"prefix": ["prlimit", f"--fsize={limit}"], "env": {"OTEL_MCP_CACHE": "false"}}
    async with served(tmp_path, **limited) as (_, client):
        result = await client.call_tool("create_rule", {"id": "big", "body": "b" * (256 * 1024)})
        text = text_of(result)
        assert result.is_error and "cannot be written" in text and "nothing was changed" in text, text
        assert "disk is full" in text or "disk I/O error" in text, text
        assert "cannot rollback" not in text
        assert (await client.call_tool("get_rule", {"id": "kept"})).content[0].text == "stays readable"
        listed = (await client.call_tool("list_rules", {})).structured_content
        assert [r["id"] for r in listed["rules"]] == ["kept"]


def test_repeated_warnings_reach_the_log_once_a_minute(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_AUTH_TOKEN": "s3cret-token"})
    raw = RawHttp(server.port)
    try:
        for i in range(40):
            assert raw.post({"jsonrpc": "2.0", "id": i, "method": "ping"}).status == 401
            reply = raw.post({"jsonrpc": "2.0", "id": i, "method": "ping"},
                             headers={"Authorization": "Bearer s3cret-token", "Host": f"evil{i}.example"})
            assert reply.status == 421
    finally:
        server.stop()
    log = server.output()
    assert log.count("unauthenticated request(s) so far") == 1, log
    assert log.count("Invalid Host header") == 1, log
    assert "s3cret-token" not in log


def test_throttle_counts_what_it_held_back() -> None:
    now = [0.0]
    throttle = Throttle(period=60, clock=lambda: now[0])
    assert throttle.allow("k") == 0
    assert [throttle.allow("k") for _ in range(3)] == [None, None, None]
    assert throttle.allow("other") == 0
    now[0] = 60.0
    assert throttle.allow("k") == 3 and throttle.allow("k") is None

    record = logging.LogRecord("mcp.x", logging.WARNING, __file__, 1, "Invalid Host header: %s", ("a",), None)
    quiet = ThrottleFilter(Throttle(period=60, clock=lambda: now[0]))
    assert quiet.filter(record) and not quiet.filter(record)
    info = logging.LogRecord("mcp.x", logging.INFO, __file__, 1, "x", None, None)
    assert quiet.filter(info) and quiet.filter(info)
