"""The PostgreSQL write feed: every committed write's generation, nothing for a rolled-back one, and a
"look yourself" after every (re)connection, since what was sent while disconnected is gone."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from otel_mcp.errors import VersionConflict
from otel_mcp.store.backends import open_store

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0  # seconds; only reached on failure


async def test_the_feed_tells_each_commit_and_asks_for_a_look_after_a_lost_connection(postgres_dsn: str) -> None:
    store = open_store(postgres_dsn)
    feed = store.write_feed()
    assert feed is not None
    told: list[int | None] = []
    lost: list[str] = []
    arrived = anyio.Event()

    async def on_write(generation: int | None) -> None:
        told.append(generation)
        arrived.set()

    async def next_told() -> int | None:
        nonlocal arrived
        with anyio.fail_after(TIMEOUT):
            await arrived.wait()
        arrived = anyio.Event()
        return told.pop(0)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(feed, on_write, lost.append)
            assert await next_told() is None  # connected: look at what happened before
            await anyio.to_thread.run_sync(store.create, {"id": "fed", "body": "v1"})
            assert await next_told() == store.generation()
            with pytest.raises(VersionConflict):  # a write that rolls back is never told
                await anyio.to_thread.run_sync(store.update, "fed", 7, {"body": "refused"})
            # The listener's connection is cut; its reconnection asks for a look.
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE application_name = 'otel-mcp listener'").fetchall()
            assert cut and all(row == (True,) for row in cut)  # ours, and any other test's still running
            assert await next_told() is None
            assert len(lost) == 1 and "terminat" in lost[0], lost  # told why, once
            await anyio.to_thread.run_sync(store.update, "fed", 1, {"body": "v2"})
            assert await next_told() == store.generation()
            assert told == []
            group.cancel_scope.cancel()
    finally:
        store.close()
