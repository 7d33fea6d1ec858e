"""Change notifications reach every client, whatever its protocol, over stdio and streamable HTTP.

A watching client subscribes; another client changes the rule; the watcher must hear of it. Handshake clients
(2025-06-18, 2025-11-25) subscribe with ``resources/subscribe`` and are told on their connection; 2026-07-28
clients open a ``subscriptions/listen`` stream. Over stdio the other client necessarily has its own server
process on the same database, so the watcher's server must notice a write it did not make.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client, StdioServerParameters, types

pytestmark = [
    pytest.mark.anyio,
    # resources/subscribe is what handshake clients send; the SDK marks it as gone from 2026-07-28
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

EVENT_TIMEOUT = 20.0  # seconds; generous for a loaded CI machine, and only reached on failure
POLL_ENV = {"OTEL_MCP_CHANGE_POLL_MS": "100"}  # other processes' writes are looked for every 0.1 s here
HANDSHAKE_VERSIONS = ["2025-06-18", "2025-11-25"]


async def _next_events(subscription: object, count: int) -> list[object]:
    events = []
    with anyio.fail_after(EVENT_TIMEOUT):
        async for event in subscription:  # type: ignore[attr-defined]
            events.append(event)
            if len(events) >= count:
                break
    return events


async def test_writes_notify_list_changed_and_resource_updated(mcp_client: Client) -> None:
    writer = mcp_client
    created = await writer.call_tool("create_rule", {"id": "watched", "body": "v1\n"})
    assert not created.is_error
    async with writer.listen(
        resources_list_changed=True, resource_subscriptions=["rules://watched", "rules://index"]
    ) as subscription:
        updated = await writer.call_tool("update_rule", {"id": "watched", "expected_version": 1, "body": "v2\n"})
        assert not updated.is_error
        events = await _next_events(subscription, 2)
    kinds = {type(e).__name__ for e in events}
    uris = {str(getattr(e, "uri", "")) for e in events}
    assert "ResourcesListChanged" in kinds or uris & {"rules://watched", "rules://index"}
    assert uris & {"rules://watched", "rules://index"}, f"no resource update among {events}"


async def test_a_failed_write_notifies_nobody(mcp_client: Client) -> None:
    await mcp_client.call_tool("create_rule", {"id": "quiet", "body": "v1\n"})
    await mcp_client.call_tool("create_rule", {"id": "other", "body": "v1\n"})
    async with mcp_client.listen(resource_subscriptions=["rules://quiet", "rules://other"]) as subscription:
        stale = await mcp_client.call_tool("update_rule", {"id": "quiet", "expected_version": 7, "body": "x"})
        assert stale.is_error
        ok = await mcp_client.call_tool("update_rule", {"id": "other", "expected_version": 1, "body": "v2\n"})
        assert not ok.is_error
        events = await _next_events(subscription, 1)
    # events arrive in order: had the conflicting write notified, rules://quiet would come first
    assert str(getattr(events[0], "uri", "")) == "rules://other"


# -- one client watches, another writes ---------------------------------------------------------------


class Pair:
    """Connects a watcher and a writer to the same rules: the same HTTP server, or two stdio servers on one file."""

    def __init__(self, transport: str, connect: Callable[..., Client]) -> None:
        self.transport = transport
        self._connect = connect

    def watcher(self, **kwargs: Any) -> Client:
        return self._connect(**kwargs)

    def writer(self) -> Client:
        return self._connect()


@pytest.fixture(params=["stdio", "http"])
def pair(
    request: pytest.FixtureRequest,
    stdio_params: Callable[..., StdioServerParameters],
    http_server_factory: Callable[..., Any],
) -> Pair:
    if request.param == "stdio":
        params = stdio_params(env=POLL_ENV)
        return Pair("stdio", lambda **kwargs: Client(params, **kwargs))
    server = http_server_factory(env=POLL_ENV)
    return Pair("http", server.client)


@contextlib.asynccontextmanager
async def handshake_watcher(
    pair: Pair, version: str, pinned: Callable[[str], contextlib.AbstractContextManager[None]]
) -> AsyncIterator[tuple[Client, MemoryObjectReceiveStream[str]]]:
    """A client connected with ``initialize`` at ``version``; the stream yields each change it is told of:
    the URI of a ``resources/updated``, or ``list_changed``."""
    send, receive = anyio.create_memory_object_stream[str](100)

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            send.send_nowait(str(message.params.uri))
        elif isinstance(message, types.ResourceListChangedNotification):
            send.send_nowait("list_changed")

    with pinned(version):
        async with pair.watcher(mode="legacy", message_handler=on_message) as watcher:
            yield watcher, receive


async def _until(changes: MemoryObjectReceiveStream[str], wanted: str) -> list[str]:
    """Every change received up to and including ``wanted``."""
    seen: list[str] = []
    with anyio.fail_after(EVENT_TIMEOUT):
        while wanted not in seen:
            seen.append(await changes.receive())
    return seen


async def _write(writer: Client, name: str, arguments: dict[str, Any]) -> None:
    result = await writer.call_tool(name, arguments)
    assert not result.is_error, result.content


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_a_handshake_client_hears_of_another_clients_write(
    pair: Pair, version: str, handshake_version: Callable[[str], contextlib.AbstractContextManager[None]]
) -> None:
    async with handshake_watcher(pair, version, handshake_version) as (watcher, changes), pair.writer() as writer:
        assert watcher.protocol_version == version
        capabilities = watcher.session.initialize_result.capabilities  # type: ignore[union-attr]
        assert capabilities.resources is not None
        assert capabilities.resources.subscribe is True and capabilities.resources.list_changed is True

        await watcher.subscribe_resource("rules://watched")
        await watcher.subscribe_resource("rules://zz-sentinel")
        await _write(writer, "create_rule", {"id": "watched", "body": "v1\n"})
        first = await _until(changes, "rules://watched")
        assert "list_changed" in first, first  # announced before the updates
        assert "rules://index" not in first, "told of a resource it did not subscribe to"

        await _write(writer, "update_rule", {"id": "watched", "expected_version": 1, "body": "v2\n"})
        await _until(changes, "rules://watched")

        await watcher.unsubscribe_resource("rules://watched")
        await _write(writer, "update_rule", {"id": "watched", "expected_version": 2, "body": "v3\n"})
        await _write(writer, "create_rule", {"id": "zz-sentinel", "body": "s\n"})
        # announced in order (and, batched, sorted by id): an update of "watched" would come first
        after = await _until(changes, "rules://zz-sentinel")
        assert "rules://watched" not in after, after


async def test_a_listen_client_hears_of_another_clients_write(pair: Pair) -> None:
    async with pair.watcher() as watcher, pair.writer() as writer:
        assert watcher.protocol_version == "2026-07-28"
        async with watcher.listen(
            resources_list_changed=True, resource_subscriptions=["rules://watched"]
        ) as subscription:
            await _write(writer, "create_rule", {"id": "watched", "body": "v1\n"})
            events = await _next_events(subscription, 2)
    assert {type(e).__name__ for e in events} == {"ResourcesListChanged", "ResourceUpdated"}
    assert [str(getattr(e, "uri", "")) for e in events if hasattr(e, "uri")] == ["rules://watched"]


async def test_subscriptions_are_capped_per_connection(
    http_server_factory: Callable[..., Any], handshake_version: Callable[[str], contextlib.AbstractContextManager[None]]
) -> None:
    server = http_server_factory(env={"OTEL_MCP_MAX_SUBSCRIPTIONS": "3"})
    async with handshake_watcher(Pair("http", server.client), "2025-11-25", handshake_version) as (watcher, _changes):
        for i in range(3):
            await watcher.subscribe_resource(f"rules://r{i}")
        await watcher.subscribe_resource("rules://r2")  # again: no new subscription
        with pytest.raises(Exception, match="at most 3") as refused:
            await watcher.subscribe_resource("rules://one-more")
        assert getattr(refused.value, "error", refused.value).code == types.INVALID_PARAMS  # type: ignore[union-attr]
        await watcher.unsubscribe_resource("rules://r0")
        await watcher.subscribe_resource("rules://one-more")
