"""Change notifications for clients of every protocol: ``subscriptions/listen`` and ``resources/subscribe``.

The SDK delivers the events published on a server's subscription bus only to 2026-07-28 clients, on their
``subscriptions/listen`` streams. Clients that connect with the ``initialize`` handshake (2024-11-05 ..
2025-11-25, most desktop clients) subscribe with ``resources/subscribe`` instead and expect
``notifications/resources/updated`` and ``notifications/resources/list_changed`` on their connection's
standalone channel (the stdio pipe, the streamable HTTP GET stream). ``ChangeBus`` is the server's bus:
it serves the listen streams as the SDK does and forwards the same events to those connections;
``serve_handshake_subscriptions`` registers the methods and advertises them in the ``initialize`` result.

Usage::

    bus = ChangeBus()
    server = MCPServer("otel-mcp", subscriptions=bus)
    serve_handshake_subscriptions(server, bus, max_subscriptions=1024)
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from otel_mcp import mcp_internals

log = logging.getLogger(__name__)

# Tools and prompts are registered at start-up and never change; the resources (rules) do.
ADVERTISED = NotificationOptions(resources_changed=True)
DELIVERY_TIMEOUT_SECONDS = 2.0  # a connection whose stream takes longer misses that event; the writer goes on


class ChangeBus(InMemorySubscriptionBus):
    """The server's subscription bus: listen streams get every event, as in the SDK; handshake connections get
    list changes and the updates of the URIs they subscribed to."""

    def __init__(self) -> None:
        super().__init__()
        self._subscribed: dict[Connection, set[str]] = {}

    async def publish(self, event: ServerEvent) -> None:
        await super().publish(event)
        targets = [connection for connection, uris in self._subscribed.items() if _wanted(event, uris)]
        if targets:
            async with anyio.create_task_group() as group:
                for connection in targets:
                    group.start_soon(_deliver, connection, event)

    def track(self, connection: Connection) -> set[str]:
        """The URIs ``connection`` subscribed to, tracked from now until it closes."""
        uris = self._subscribed.get(connection)
        if uris is None:
            uris = self._subscribed[connection] = set()
            connection.exit_stack.callback(self._subscribed.pop, connection, None)
        return uris


def _wanted(event: ServerEvent, uris: set[str]) -> bool:
    if isinstance(event, ResourceUpdated):
        return event.uri in uris
    if isinstance(event, ResourcesListChanged):
        return ADVERTISED.resources_changed
    if isinstance(event, ToolsListChanged):
        return ADVERTISED.tools_changed
    return ADVERTISED.prompts_changed


async def _deliver(connection: Connection, event: ServerEvent) -> None:
    with anyio.move_on_after(DELIVERY_TIMEOUT_SECONDS) as scope:
        if isinstance(event, ResourceUpdated):
            await connection.send_resource_updated(event.uri)
        elif isinstance(event, ResourcesListChanged):
            await connection.send_resource_list_changed()
        elif isinstance(event, ToolsListChanged):
            await connection.send_tool_list_changed()
        elif isinstance(event, PromptsListChanged):
            await connection.send_prompt_list_changed()
    if scope.cancelled_caught:
        log.warning("a client's stream did not take %s within %ss: dropped", event, DELIVERY_TIMEOUT_SECONDS)


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    # The kernel's request context does not expose the connection (the SDK's newer Context does, as
    # ``ctx.connection``); the per-request session holds it, and it is the one object a connection keeps.
    connection: Connection | None = mcp_internals.connection(ctx.session)
    return connection


def serve_handshake_subscriptions(server: MCPServer, bus: ChangeBus, max_subscriptions: int) -> None:
    """Serve ``resources/subscribe`` and ``resources/unsubscribe``, tell every handshake connection of list
    changes, and advertise ``resources.subscribe`` and ``resources.listChanged`` in the ``initialize`` result.

    :param server: the server built with ``subscriptions=bus``
    :param bus: the bus the write tools publish on
    :param max_subscriptions: resource URIs one connection may subscribe to
    """
    lowlevel = mcp_internals.lowlevel_server(server)

    def handshake(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
        return _connection(ctx) if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS else None

    async def initialized(ctx: ServerRequestContext[Any, Any], _params: types.NotificationParams) -> None:
        connection = handshake(ctx)
        if connection is not None:
            bus.track(connection)

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        connection = handshake(ctx)
        if connection is not None:
            uris, uri = bus.track(connection), str(params.uri)
            if len(uris) >= max_subscriptions and uri not in uris:
                raise MCPError(
                    types.INVALID_PARAMS,
                    f"at most {max_subscriptions} resource subscriptions per connection (max_subscriptions); "
                    "unsubscribe from one first",
                )
            # Like a listen stream's filter, any URI is honoured: a rule created later is then watched too.
            uris.add(uri)
        return types.EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        connection = handshake(ctx)
        if connection is not None:
            bus.track(connection).discard(str(params.uri))
        return types.EmptyResult()

    lowlevel.add_notification_handler("notifications/initialized", types.NotificationParams, initialized)
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
    # Both transports ask the server for its initialize result with no arguments (stdio through
    # serve_stdio, HTTP through the SDK's session manager): this is the one place to state the flags.
    lowlevel.create_initialization_options = functools.partial(
        lowlevel.create_initialization_options, ADVERTISED
    )
