"""Three server replicas on one PostgreSQL behind a real HAProxy agree with each other.

- Optimistic concurrency holds across replicas: writers on different replicas update the same rules; every
  acknowledged write is in ``rule_versions``, every conflict was reported, no update is lost.
- No replica composes from stale rules after a write acknowledged by another, L1 and L2 warm included.
- Change notifications reach subscribers on any replica, handshake (``resources/subscribe``, 2025-11-25)
  and 2026-07-28 (``subscriptions/listen``) clients alike, pushed by PostgreSQL (``LISTEN``/``NOTIFY``):
  polling is off in these replicas.
- A replica SIGKILLed while writes are in flight loses nothing acknowledged; restarted, it catches up. One
  killed inside its write transaction leaves neither a half-applied write nor a held lock.

One cluster for the module (starting three servers is most of the time); the kill tests run last.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client, types
from postgres_server import PostgresServer
from replica_cluster import Cluster, start_cluster

from otel_mcp.loadtest.loadgen.engine import OpError, call
from otel_mcp.loadtest.scenarios.updates import Ledger, make_op, verify
from otel_mcp.store.backends import open_store

pytestmark = [
    pytest.mark.anyio,
    # resources/subscribe is what handshake clients send; the SDK marks it as gone from 2026-07-28
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

EVENT_TIMEOUT = 15.0  # seconds; generous for a loaded machine, and only reached on failure
HANDSHAKE = "2025-11-25"
# No polling: whatever a replica hears of another's writes, PostgreSQL told it.
REPLICA_ENV = {"OTEL_MCP_CHANGE_POLL_MS": "0"}


@pytest.fixture(scope="module")
def replicas(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    dsn = postgres_server.create_database()
    cluster = start_cluster(3, dsn, tmp_path_factory.mktemp("replicas"), REPLICA_ENV)
    try:
        yield cluster
    finally:
        cluster.stop()
        postgres_server.drop_database(dsn.rsplit("/", 1)[1])


async def _create(client: Client, rule_id: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = await call(client, "create_rule", {"id": rule_id, "body": f"# {rule_id}\n\nv1\n",
                                                                "activation": "always", **fields})
    return result


async def _composed_version(client: Client, rule_id: str) -> int:
    composed = await call(client, "compose_rules", {"rule_ids": [rule_id]})
    return int({i["id"]: i["version"] for i in composed["included"]}.get(rule_id, 0))


async def _contended(replicas: Cluster, rules: list[str]) -> tuple[Ledger, Any]:
    """Creates ``rules``; (the ledger, the get+update operation that records into it), as ``concurrent-updates``."""
    async with replicas.client() as setup:
        for rule_id in rules:
            await _create(setup, rule_id, activation="manual")
    ledger = Ledger(rules)
    return ledger, make_op(ledger, rules)


# -- optimistic concurrency -----------------------------------------------------------------------


async def test_concurrent_writers_on_every_replica_lose_no_update(replicas: Cluster) -> None:
    ledger, op = await _contended(replicas, ["hot-a", "hot-b"])
    seen: list[str] = []

    async def writer(index: int, mode: str) -> None:
        rng = random.Random(index)
        async with replicas.client(seen=seen, mode=mode) as client:
            for _ in range(12):
                with contextlib.suppress(OpError):  # a conflict: recorded in the ledger by the op
                    await op(client, rng)

    # Sessionless writers go round-robin (each request may reach another replica); handshake writers stick
    # to the replica their session opened on, spread by round-robin too.
    async with anyio.create_task_group() as group:
        for index, mode in enumerate(["auto", "auto", "auto", "legacy", "legacy", "legacy"]):
            group.start_soon(writer, index, mode)

    assert {replicas.name(i) for i in range(3)} <= set(seen), f"writes did not reach every replica: {set(seen)}"
    store = open_store(replicas.db)
    try:
        checks = verify(store, ledger)
    finally:
        store.close()
    failed = [c for c in checks if not c["ok"]]
    assert not failed, failed


# -- no stale composition ---------------------------------------------------------------------------


async def test_no_replica_composes_stale_rules_after_another_acknowledged_a_write(replicas: Cluster) -> None:
    async with contextlib.AsyncExitStack() as stack:
        direct = [await stack.enter_async_context(replicas.replica(i).client()) for i in range(3)]
        await _create(direct[0], "coherent")
        version = 1
        for client in direct:  # every replica now holds the composition in L1, and the shared L2 has it
            assert await _composed_version(client, "coherent") == version
        for round_ in range(6):
            writer = direct[round_ % 3]
            written = await call(writer, "update_rule", {"id": "coherent", "expected_version": version,
                                                         "body": f"# coherent\n\nround {round_}\n"})
            version = int(written["version"])
            for index, reader in enumerate(direct):
                assert await _composed_version(reader, "coherent") == version, f"replica {index} composed stale"
                text = (await reader.read_resource("rules://coherent")).contents[0]
                assert f"round {round_}" in getattr(text, "text", ""), f"replica {index} served a stale rule"


# -- change notifications -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _handshake_watcher(
    replicas: Cluster, uris: list[str], handshake_version: Any
) -> AsyncIterator[tuple[str, MemoryObjectReceiveStream[str]]]:
    """A 2025-11-25 client through HAProxy subscribed to ``uris``: (its replica, the URIs it is told of)."""
    send, receive = anyio.create_memory_object_stream[str](100)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            send.send_nowait(str(message.params.uri))

    seen: list[str] = []
    with handshake_version(HANDSHAKE):
        async with replicas.client(seen=seen, mode="legacy", message_handler=on_message) as watcher:
            assert watcher.protocol_version == HANDSHAKE
            for uri in uris:
                await watcher.subscribe_resource(uri)
            yield seen[-1], receive


@contextlib.asynccontextmanager
async def _listen_watcher(replicas: Cluster, uris: list[str]) -> AsyncIterator[tuple[str, Any]]:
    """A 2026-07-28 client through HAProxy with a ``subscriptions/listen`` stream: (its replica, the stream)."""
    seen: list[str] = []
    async with replicas.client(seen=seen) as watcher, watcher.listen(resource_subscriptions=uris) as stream:
        yield seen[-1], stream


async def _next_uri(stream: Any) -> str:
    with anyio.fail_after(EVENT_TIMEOUT):
        if isinstance(stream, MemoryObjectReceiveStream):
            return str(await stream.receive())
        async for event in stream:
            if isinstance(event, types.ResourceUpdatedNotification) or hasattr(event, "uri"):
                return str(event.uri)
    raise AssertionError("the listen stream ended")


async def test_subscribers_on_any_replica_hear_of_writes_on_every_other(
    replicas: Cluster, handshake_version: Any
) -> None:
    uri, sentinel = "rules://announced", "rules://zz-sentinel"
    async with contextlib.AsyncExitStack() as stack:
        direct = [await stack.enter_async_context(replicas.replica(i).client()) for i in range(3)]
        await _create(direct[0], "announced")
        handshake_on, handshake = await stack.enter_async_context(_handshake_watcher(replicas, [uri, sentinel],
                                                                                     handshake_version))
        listen_on, listening = await stack.enter_async_context(_listen_watcher(replicas, [uri, sentinel]))
        version = 1
        for index, writer in enumerate(direct):
            written = await call(writer, "update_rule", {"id": "announced", "expected_version": version,
                                                         "body": f"# announced\n\nby replica {index}\n"})
            version = int(written["version"])
            assert await _next_uri(handshake) == uri, f"handshake watcher on {handshake_on}, write on {index}"
            assert await _next_uri(listening) == uri, f"listen watcher on {listen_on}, write on {index}"
        # Each write told once: the writer's own announcement and the database's NOTIFY make no duplicate, so the
        # next thing either watcher hears is the sentinel written last.
        await _create(direct[1], "zz-sentinel")
        assert await _next_uri(handshake) == sentinel
        assert await _next_uri(listening) == sentinel
        # Three writes, one on each replica: both watchers heard at least two made on another replica.
        assert {handshake_on, listen_on} <= {replicas.name(i) for i in range(3)}
    for index in range(3):
        status, ready = replicas.replica(index).get("/readyz")
        assert status == 200 and ready["checks"]["other_writes"] == "pushed by the database (listening)", ready


# -- a replica killed mid-write --------------------------------------------------------------------------


async def _until_a_writer_waits(holder: psycopg.Connection[Any]) -> None:
    """Until some session of this database waits for a lock (the writers' lock ``holder`` holds)."""
    with anyio.fail_after(EVENT_TIMEOUT):
        while not holder.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                 " AND datname = current_database()").fetchone()[0]:  # type: ignore[index]
            await anyio.sleep(0.02)


async def test_a_write_cut_off_by_a_kill_is_not_half_applied_and_leaves_no_lock(replicas: Cluster) -> None:
    """Provably mid-write: the replica is killed while its write transaction waits for the writers' lock,
    which the test holds."""
    async with replicas.replica(0).client() as other:
        await _create(other, "cut")
        unanswered: list[BaseException] = []

        async def doomed() -> None:
            try:
                async with replicas.replica(2).client() as victim:
                    await call(victim, "update_rule", {"id": "cut", "expected_version": 1, "body": "# cut\n\nnever\n"})
            except Exception as exc:
                unanswered.append(exc)

        with psycopg.connect(replicas.db, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute("SELECT value FROM store_meta WHERE key = 'generation' FOR UPDATE")
            async with anyio.create_task_group() as group:
                group.start_soon(doomed)
                await _until_a_writer_waits(holder)
                replicas.kill(2)
            holder.execute("ROLLBACK")
        assert len(unanswered) == 1, "the cut write must have had no answer"
        # The lock is free at once (another replica writes), and the cut write left nothing.
        written = await call(other, "update_rule", {"id": "cut", "expected_version": 1, "body": "# cut\n\nafter\n"})
        assert written["version"] == 2
    store = open_store(replicas.db)
    try:
        history = store.history("cut")
    finally:
        store.close()
    assert [(e.version, e.spec.body) for e in history] == [(2, "# cut\n\nafter\n"), (1, "# cut\n\nv1\n")]
    await anyio.to_thread.run_sync(replicas.restart, 2)


async def test_a_replica_killed_mid_write_loses_nothing_acknowledged_and_catches_up_when_restarted(
    replicas: Cluster,
) -> None:
    rules = ["survivor-a", "survivor-b"]
    ledger, op = await _contended(replicas, rules)
    unanswered = 0
    stop = anyio.Event()

    async def writer(index: int) -> None:
        nonlocal unanswered
        rng = random.Random(100 + index)
        while not stop.is_set():
            try:
                async with replicas.client() as client:
                    while not stop.is_set():
                        with contextlib.suppress(OpError):
                            await op(client, rng)
            except Exception:  # the request in flight on the killed replica: no answer, outcome unknown
                unanswered += 1

    async with anyio.create_task_group() as group:
        for index in range(4):
            group.start_soon(writer, index)
        await anyio.sleep(1.0)
        replicas.kill(1)
        await anyio.sleep(1.5)
        await anyio.to_thread.run_sync(replicas.restart, 1)
        await anyio.sleep(1.0)
        stop.set()

    store = open_store(replicas.db)
    try:
        checks = {c["name"]: c for c in verify(store, ledger)}
        latest = {rule_id: store.get(rule_id).version for rule_id in rules}
    finally:
        store.close()
    acked = sum(len(a) for a in ledger.acked.values())
    assert acked > 0
    assert checks["no lost update"]["ok"], checks["no lost update"]
    assert checks["conflicts were real"]["ok"], checks["conflicts were real"]
    assert checks["no stale read after a write"]["ok"], checks["no stale read after a write"]

    # The restarted replica composes the latest versions and hears of writes made on another replica.
    async with replicas.replica(1).client() as restarted, replicas.replica(0).client() as other:
        for rule_id in rules:
            assert await _composed_version(restarted, rule_id) == latest[rule_id]
        async with restarted.listen(resource_subscriptions=["rules://survivor-a"]) as stream:
            await call(other, "update_rule", {"id": "survivor-a", "expected_version": latest["survivor-a"],
                                              "body": "# survivor-a\n\nafter the restart\n"})
            assert await _next_uri(stream) == "rules://survivor-a"
