"""Rule storage: the model, its validation, one store interface and its backends (SQLite, PostgreSQL)."""

from otel_mcp.store.base import Changes, HistoryEntry, RuleStoreBase, SearchHit, StoreBusy, StoreUnavailable
from otel_mcp.store.model import Activation, Rule, RuleLimits, RuleSpec, build_spec, check_rule_id, merge_spec
from otel_mcp.store.sqlite import RuleStore

__all__ = [
    "Activation",
    "Changes",
    "HistoryEntry",
    "Rule",
    "RuleLimits",
    "RuleSpec",
    "RuleStore",
    "RuleStoreBase",
    "SearchHit",
    "StoreBusy",
    "StoreUnavailable",
    "build_spec",
    "check_rule_id",
    "merge_spec",
]
