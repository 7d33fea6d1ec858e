"""A PostgreSQL database that goes away and comes back: /readyz follows it, tool calls fail clearly
and lose nothing, the password of the connection string shows nowhere (errors, logs, stats), and the first
read after a restart does not fail."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from postgres_server import PostgresServer
from server_process import HttpServer

from otel_mcp.store.backends import open_store

pytestmark = pytest.mark.anyio

READY_TIMEOUT = 30.0  # seconds for /readyz to follow the database; a bound, not a measurement


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own: it is stopped and started again, which the session's must not be."""
    with PostgresServer() as server:
        yield server


def _ready_becomes(server: HttpServer, status: int) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        code, body = server.get("/readyz", timeout=10)
        if code == status or time.monotonic() > deadline:
            assert code == status, body
            return body
        time.sleep(0.1)


async def test_readyz_follows_the_database_and_no_password_shows(
        own_postgres: PostgresServer, http_server_factory: Callable[..., HttpServer], calls: Any,
        run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    dsn = own_postgres.create_database()
    server = http_server_factory(env={"OTEL_MCP_DB": dsn, "OTEL_MCP_DB_TIMEOUT_MS": "1000"}, db=dsn)
    async with server.client() as client:
        await calls.ok(client, "create_rule", {"id": "kept", "body": "written before the outage"})
        assert _ready_becomes(server, 200)["checks"]["database"] == "ok"

        own_postgres.stop()
        down = _ready_becomes(server, 503)
        assert down["ready"] is False and down["checks"]["database"] == "error: StoreUnavailable"
        refused = await calls.error(client, "update_rule", {"id": "kept", "expected_version": 1, "body": "lost?"})
        assert "cannot be reached" in refused and "otel_mcp:***@127.0.0.1" in refused

        own_postgres.start()
        assert _ready_becomes(server, 200)["checks"]["rules"] == 1
        text, meta = await calls.document(client, "get_rule", {"id": "kept"})
        assert text == "written before the outage" and meta["version"] == 1  # nothing written, nothing lost

    stats = run_cli("stats", "--json", "--url", server.base_url)
    assert stats.returncode == 0, stats.stderr
    database = json.loads(stats.stdout)["database"]
    assert database == {"backend": "postgresql", "location": dsn.replace(own_postgres.password, "***")}
    for seen in (refused, stats.stdout, server.output()):
        assert own_postgres.password not in seen


def test_the_first_read_or_write_after_a_database_restart_succeeds(own_postgres: PostgresServer) -> None:
    """Pooled connections die with the database; a read, or a write before it has done anything, that meets
    one tries again once on a fresh one."""
    with open_store(own_postgres.create_database(), pool_size=2) as store:
        store.create({"id": "kept", "body": "x"})
        assert store.get("kept").version == 1  # the pool now holds a connection to the old server process
        own_postgres.stop()
        own_postgres.start()
        assert store.get("kept").version == 1
        own_postgres.stop()
        own_postgres.start()
        assert store.update("kept", 1, {"body": "y"}).version == 2
        assert [e.version for e in store.history("kept")] == [2, 1]
