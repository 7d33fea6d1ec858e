"""Committed writes, told by PostgreSQL itself: ``NOTIFY`` in each write's transaction, ``LISTEN`` in each server.

A write transaction of the PostgreSQL store sends ``pg_notify(<channel>, <generation>)`` before it commits.
PostgreSQL delivers it at commit, to every session listening on the channel, in commit order, and never for a
write that rolled back: the database is the bus, no broker besides it. Every server process keeps one
connection of its own listening (``listen_for_writes``, outside the store's pool: a pooled connection is
handed to other work between requests and would miss what arrives meanwhile).

Notifications sent while a listener is disconnected are lost, so after every (re)connection the listener
reports ``None``, "look at the generation yourself": the caller reads what changed since the generation it
last saw, and nothing written during the outage goes untold.

Usage::

    await listen_for_writes(url, channel, on_write, on_lost)   # in a task, until cancelled
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import anyio
import psycopg
from psycopg import sql

from otel_mcp.store.base import OnLost, OnWrite
from otel_mcp.throttle import Throttle, held_back

RECONNECT_FIRST_S = 0.1  # the first retry after a lost connection, doubled up to RECONNECT_MAX_S
RECONNECT_MAX_S = 5.0
# A database that vanishes without closing the socket (host down, network cut) is noticed by TCP keepalives
# within about idle + interval * count seconds; without them the listener would wait for ever.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
CONNECT_TIMEOUT_S = 5

log = logging.getLogger(__name__)


def _generation(payload: str) -> int | None:
    try:
        return int(payload)
    except ValueError:
        return None


async def listen_for_writes(url: str, channel: str, on_write: OnWrite, on_lost: OnLost) -> NoReturn:
    """Call ``on_write(generation)`` for each committed write, and ``on_write(None)`` after each (re)connection,
    until cancelled; ``on_lost(reason)`` when the connection is lost or refused, then retry with backoff.
    Neither callback may raise."""
    delay = RECONNECT_FIRST_S
    throttle = Throttle()
    lost = False
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="otel-mcp listener",
                **KEEPALIVES,
            )
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = RECONNECT_FIRST_S
                if lost:
                    log.info("listening for other replicas' writes again")
                    lost = False
                await on_write(None)  # whatever was written while no one here was listening
                async for note in conn.notifies():
                    await on_write(_generation(note.payload))
            reason = "the database closed the connection"
        except psycopg.Error as exc:
            reason = str(exc).strip() or type(exc).__name__
        lost = True
        on_lost(reason)
        held = throttle.allow("lost")
        if held is not None:
            log.warning("listening for other replicas' writes: %s; reconnecting (change notifications wait, "
                        "compositions stay current)%s", reason, held_back(held))
        await anyio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)
