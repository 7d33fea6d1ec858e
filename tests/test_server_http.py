"""The server over streamable HTTP (``otel-mcp serve --transport http``), driven by the SDK's real client."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("mcp_server", ["http"], indirect=True)]


@pytest.mark.both_backends
async def test_health_and_readiness(mcp_server: Any, mcp_client: Any, calls: Any, store_backend: str) -> None:
    status, body = mcp_server.http.get("/healthz")
    assert status == 200 and body["status"] == "ok" and body["version"]
    await calls.ok(mcp_client, "create_rule", {"id": "a", "body": "x"})
    status, body = mcp_server.http.get("/readyz")
    assert status == 200 and body["ready"] is True
    assert body["checks"]["database"] == "ok" and body["checks"]["rules"] == 1
    if store_backend == "sqlite":
        assert body["checks"]["other_writes"] == "polled every 1000 ms"  # change_poll_ms
    else:
        assert body["checks"]["other_writes"].startswith("pushed by the database")  # LISTEN/NOTIFY


async def test_request_over_the_size_limit_is_refused(mcp_server: Any, mcp_client: Any, calls: Any) -> None:
    await calls.ok(mcp_client, "create_rule", {"id": "a", "body": "x"})
    with calls.unchanged(mcp_server.db), pytest.raises(MCPError) as info:
        await mcp_client.call_tool("create_rule", {"id": "huge", "body": "x" * (5 * 1024 * 1024)})
    calls.no_traceback(str(info.value))
    # the connection and the server survive
    assert (await calls.ok(mcp_client, "get_rule", {"id": "a"}))["version"] == 1


@pytest.mark.both_backends
async def test_two_clients_see_each_other_and_conflict(mcp_server: Any, calls: Any) -> None:
    async with mcp_server.client() as first, mcp_server.client() as second:
        await calls.ok(first, "create_rule", {"id": "shared", "body": "v1"})
        seen = await calls.ok(second, "get_rule", {"id": "shared"})
        assert seen["version"] == 1
        results: dict[str, Any] = {}

        async def update(name: str, client: Any) -> None:
            results[name] = await client.call_tool(
                "update_rule", {"id": "shared", "expected_version": 1, "body": f"by {name}"}
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "first", first)
            tg.start_soon(update, "second", second)
        outcomes = sorted(r.is_error for r in results.values())
        assert outcomes == [False, True]
        loser = next(r for r in results.values() if r.is_error)
        assert "expected version 1, current version is 2" in calls.text(loser)
        winner = next(name for name, r in results.items() if not r.is_error)
        assert (await calls.document(second, "get_rule", {"id": "shared"}))[0] == f"by {winner}"
