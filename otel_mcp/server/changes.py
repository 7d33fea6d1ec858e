"""Announce every change to the rules on the subscription bus, whichever process wrote it.

A write tool of this server announces its change at once (``announce``). Writes by other processes sharing
the database (other replicas, ``otel-mcp import``, the server of another stdio client) are found by ``watch``:
on PostgreSQL the database pushes every committed write (``LISTEN``/``NOTIFY``, ``store.write_feed()``); on
SQLite, which cannot, by looking at the store's generation every ``change_poll_ms``. Both read what changed
since the last announced generation, so every write is announced once: ``resources/list_changed``,
``rules://index`` and ``rules://<id>`` of each rule written or deleted.

Usage::

    changes = ChangeAnnouncer(store, bus)
    await changes.announce()          # after a write
    await changes.watch(1.0)          # in a task, until cancelled
"""

from __future__ import annotations

import logging

import anyio
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated
from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_mcp.store.base import RuleStoreBase
from otel_mcp.throttle import Throttle, held_back

INDEX_URI = "rules://index"

log = logging.getLogger(__name__)


def rule_uri(rule_id: str) -> str:
    return f"rules://{rule_id}"


class ChangeAnnouncer:
    """Publishes the store's changes on ``bus``, each once.

    :param store: the rule store
    :param bus: the server's subscription bus
    """

    def __init__(self, store: RuleStoreBase, bus: SubscriptionBus) -> None:
        self._store = store
        self._bus = bus
        self._generation = store.generation()
        self._lock = anyio.Lock()
        self._throttle = Throttle()
        #: how this process hears of other processes' writes, shown by /readyz
        self.other_writes = "not watched"

    async def announce(self) -> None:
        """Publish what changed since the last announcement (nothing if nothing did)."""
        async with self._lock:
            changes = await anyio.to_thread.run_sync(self._store.changes_since, self._generation)
            if changes.generation == self._generation:
                return
            self._generation = changes.generation
            await self._bus.publish(ResourcesListChanged())
            await self._bus.publish(ResourceUpdated(uri=INDEX_URI))
            for rule_id in sorted({rule.id for rule in changes.written} | changes.deleted):
                await self._bus.publish(ResourceUpdated(uri=rule_uri(rule_id)))

    async def written(self, generation: int | None) -> None:
        """Announce a write committed at ``generation`` unless it already was (``None``: unknown, look).

        Never raises: a database that cannot be read now leaves the write unannounced until the next one,
        whose announcement reads everything since the last generation announced, this one included.
        """
        if generation is not None and generation <= self._generation:
            return
        try:
            await self.announce()
        except Exception as exc:
            held = self._throttle.allow("announce")
            if held is not None:
                log.warning("announcing other processes' writes failed: %s%s", exc, held_back(held))

    async def _heard(self, generation: int | None) -> None:
        if generation is None:  # (re)connected
            self.other_writes = "pushed by the database (listening)"
        await self.written(generation)

    def _lost(self, reason: str) -> None:
        self.other_writes = f"pushed by the database (reconnecting: {reason})"

    async def watch(self, poll_interval: float) -> None:
        """Announce other processes' writes until cancelled: as the database pushes them when it can, else by
        looking at the generation every ``poll_interval`` seconds (0: never)."""
        feed = self._store.write_feed()
        if feed is not None:
            self.other_writes = "pushed by the database (connecting)"
            await feed(self._heard, self._lost)
        if poll_interval > 0:
            self.other_writes = f"polled every {poll_interval * 1000:g} ms"
        while poll_interval > 0:
            await anyio.sleep(poll_interval)
            # A probe a second is no operation of anyone's: no span, no DB metric point.
            with suppress_instrumentation():
                generation = await anyio.to_thread.run_sync(self._store.generation)
            if generation != self._generation:
                await self.written(None)
