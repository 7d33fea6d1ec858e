"""Change notifications: a subscriber hears of every write, over stdio and streamable HTTP."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

pytestmark = pytest.mark.anyio

EVENT_TIMEOUT = 20.0  # seconds; generous for a loaded CI machine, and only reached on failure


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
