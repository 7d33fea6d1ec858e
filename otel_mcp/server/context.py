"""The objects one server process shares between its requests, and their lifecycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from otel_mcp.compose.engine import ComposeOptions
from otel_mcp.compose.service import ComposeService
from otel_mcp.config import Settings
from otel_mcp.server.results import READ_RESERVE_BYTES
from otel_mcp.store.backends import open_store
from otel_mcp.store.base import RuleStoreBase
from otel_mcp.store.model import RuleLimits

log = logging.getLogger(__name__)


def warn_rules_over_limits(store: RuleStoreBase) -> None:
    """Name, once, the stored rules that the current limits would refuse: they stay stored and readable."""
    over = store.over_limits()
    if over:
        log.warning(
            "%d stored rule(s) break the current limits; they stay stored and readable (compose, get_rule when "
            "the result fits, export_rules) but an update must bring them within the limits: %s",
            len(over), "; ".join(f"{rule_id}: {reason}" for rule_id, reason in over),
        )


@dataclass
class RulesContext:
    settings: Settings
    store: RuleStoreBase
    composer: ComposeService
    cache: Any = None  # otel_mcp.cache.TieredCache when caching is on
    warming: Any = None  # otel_mcp.cache.WarmProgress of the start-up warm-up
    changes: Any = None  # otel_mcp.server.changes.ChangeAnnouncer, once the server is built

    @classmethod
    def open(cls, settings: Settings, *, warm: bool = False) -> RulesContext:
        """Open the store and, when ``settings.cache``, the two-tier cache.

        :param warm: start warming the cache in the background, hottest first (default False)
        """
        options = ComposeOptions.from_settings(settings)
        limits = RuleLimits(
            max_body_bytes=settings.max_body_bytes,
            max_imports=settings.max_imports,
            max_settings_bytes=settings.max_settings_bytes,
            max_read_bytes=settings.max_result_bytes - READ_RESERVE_BYTES,
            globs=options.globs,
        )
        store = open_store(settings.db, limits, read_only=settings.read_only, pool_size=settings.db_pool_size,
                           timeout_s=settings.db_timeout_ms / 1000)
        warn_rules_over_limits(store)
        cache = None
        if settings.cache:
            from otel_mcp.cache import TieredCache

            cache = TieredCache(
                settings.cache_dir, l1_bytes=settings.cache_memory_mb * 2**20, l2_bytes=settings.cache_disk_mb * 2**20
            )
        context = cls(settings, store, ComposeService(store, cache, options, observer=cache), cache=cache)
        if cache is not None and warm:
            from otel_mcp.cache import start_warming

            context.warming = start_warming(context.composer, cache)
        return context

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` shows about the cache, its warm-up, and how other processes' writes are heard."""
        shown: dict[str, Any] = {"cache": "on" if self.cache is not None else "off"}
        if self.warming is not None:
            shown["warm_up"] = self.warming.to_dict()
        if self.changes is not None:
            shown["other_writes"] = self.changes.other_writes
        return shown

    def close(self) -> None:
        """Save the cache's popularity snapshot and close everything (graceful shutdown)."""
        if self.cache is not None:
            try:
                self.cache.close()
            except Exception:
                log.exception("closing the composition cache failed")
        self.store.close()
