"""Override chains resolve strongest rule first; a dropped rule applies none of its overrides."""

from __future__ import annotations

from otel_mcp.compose.engine import ComposeRequest, compose
from otel_mcp.store.model import Activation, Rule


def _rule(rule_id: str, priority: int, overrides: tuple[str, ...] = ()) -> Rule:
    return Rule(id=rule_id, body=f"{rule_id} body", activation=Activation.ALWAYS, priority=priority,
                overrides=overrides, version=1, etag=rule_id)


def _kept(*rules: Rule) -> list[str]:
    return [entry["id"] for entry in compose(rules, ComposeRequest()).included]


def test_a_stronger_outer_override_leaves_the_inner_target_alone() -> None:
    # C overrides A, A overrides B; C is the strongest: A goes first, so its override of B never applies.
    assert _kept(_rule("c", 3, ("a",)), _rule("a", 2, ("b",)), _rule("b", 1)) == ["b", "c"]


def test_a_stronger_inner_override_applies_before_it_is_dropped() -> None:
    # A is the strongest: it drops B, then C (weaker, but not overridden) drops A.
    assert _kept(_rule("c", 1, ("a",)), _rule("a", 3, ("b",)), _rule("b", 2)) == ["c"]
