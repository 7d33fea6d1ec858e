"""The objects one server process shares between its requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otel_mcp.compose.engine import ComposeOptions
from otel_mcp.compose.service import ComposeService, CompositionCache
from otel_mcp.config import Settings
from otel_mcp.store.model import RuleLimits
from otel_mcp.store.sqlite import RuleStore


@dataclass
class RulesContext:
    settings: Settings
    store: RuleStore
    composer: ComposeService
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. the cache object, telemetry handles

    @classmethod
    def open(cls, settings: Settings, cache: CompositionCache | None = None) -> RulesContext:
        store = RuleStore(
            settings.db,
            RuleLimits(max_body_bytes=settings.max_body_bytes, max_imports=settings.max_imports),
            read_only=settings.read_only and settings.db.exists(),
        )
        options = ComposeOptions(max_import_depth=settings.max_import_depth, max_rules=settings.max_rules)
        return cls(settings, store, ComposeService(store, cache, options))

    def close(self) -> None:
        self.store.close()
