"""Rule storage: the model, its validation, and the SQLite store."""

from otel_mcp.store.model import Activation, Rule, RuleLimits, RuleSpec, build_spec, check_rule_id, merge_spec
from otel_mcp.store.sqlite import HistoryEntry, RuleStore, SearchHit, StoreBusy

__all__ = [
    "Activation",
    "HistoryEntry",
    "Rule",
    "RuleLimits",
    "RuleSpec",
    "RuleStore",
    "SearchHit",
    "StoreBusy",
    "build_spec",
    "check_rule_id",
    "merge_spec",
]
