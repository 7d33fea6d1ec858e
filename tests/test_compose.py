"""The composition engine, step by step, and the composition service over a real store."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from otel_mcp.compose import ComposeOptions, ComposeRequest, Composition, compose, estimate_tokens
from otel_mcp.compose.engine import import_problem
from otel_mcp.compose.globs import GlobLimits
from otel_mcp.compose.service import ComposeService
from otel_mcp.errors import CompositionError, InvalidRule, LimitExceeded
from otel_mcp.store import Rule, RuleStoreBase, build_spec

T0 = 1_700_000_000.0


def rule(rule_id: str, body: str | None = None, *, version: int = 1, updated_at: float = T0, **kw: Any) -> Rule:
    """A stored-looking rule, validated like the store would."""
    s = build_spec({"id": rule_id, "body": body if body is not None else f"Body of {rule_id}.\n", **kw})
    return Rule(**s.__dict__, version=version, etag=s.content_hash(), created_at=T0, updated_at=updated_at)


def run(rules: list[Rule], options: ComposeOptions | None = None, **request: Any) -> Composition:
    return compose(rules, ComposeRequest.from_args(**request), options or ComposeOptions())


def ids(c: Composition) -> list[str]:
    return [i["id"] for i in c.included]


def why(c: Composition) -> dict[str, str]:
    return {i["id"]: i["why"] for i in c.included}


def dropped(c: Composition) -> dict[str, str]:
    return {d["id"]: d["reason"] for d in c.dropped}


# -- step 1: select ---------------------------------------------------------------


def test_empty_rule_set() -> None:
    c = run([])
    assert c.markdown == "" and c.included == [] and c.token_estimate == 0
    assert len(c.composition_hash) == 64


def test_select_by_activation() -> None:
    rules = [
        rule("always-on", activation="always"),
        rule("by-hand", activation="manual"),
        rule("py", activation="auto", globs=["*.py"]),
        rule("ts", activation="auto", globs=["*.ts"]),
        rule("on-request", activation="agent_requested", description="Ask for me"),
        rule("off", activation="always", enabled=False),
    ]
    c = run(rules, context_files=["src/app.py"])
    assert ids(c) == ["always-on", "py"]
    assert why(c) == {"always-on": "always", "py": "glob matched src/app.py"}
    assert c.index == [{"id": "on-request", "description": "Ask for me"}]
    assert "<!-- rules:index -->" in c.markdown and "- `on-request`: Ask for me" in c.markdown
    assert "Body of on-request" not in c.markdown
    assert "Body of by-hand" not in c.markdown and "Body of off" not in c.markdown


def test_named_rules_of_any_activation_are_included_and_leave_the_index() -> None:
    rules = [
        rule("by-hand", activation="manual"),
        rule("on-request", activation="agent_requested", description="d"),
        rule("py", activation="auto", globs=["*.py"]),
    ]
    c = run(rules, rule_ids=["on-request", "by-hand", "py"])
    assert ids(c) == ["by-hand", "on-request", "py"]
    assert set(why(c).values()) == {"named in rule_ids"}
    assert c.index == [] and "rules:index" not in c.markdown


def test_named_unknown_rule_is_an_error_naming_it() -> None:
    with pytest.raises(CompositionError, match="rule_ids names rule 'ghost', which does not exist"):
        run([rule("a")], rule_ids=["ghost"])


def test_named_disabled_rule_is_dropped_with_reason() -> None:
    c = run([rule("off", enabled=False)], rule_ids=["off"])
    assert ids(c) == [] and dropped(c) == {"off": "disabled"}


def test_auto_rule_needs_a_matching_file_and_respects_exclude_globs() -> None:
    r = rule("py", activation="auto", globs=["**/*.py"], exclude_globs=["tests/**", "**/*_pb2.py"])
    assert ids(run([r])) == []
    assert ids(run([r], context_files=["tests/test_x.py"])) == []
    assert ids(run([r], context_files=["gen/a_pb2.py"])) == []
    c = run([r], context_files=["tests/test_x.py", "./src\\main.py"])
    assert ids(c) == ["py"] and why(c)["py"] == "glob matched src/main.py"


def test_auto_rule_with_braces_and_anchoring() -> None:
    r = rule("front", activation="auto", globs=["web/{src,lib}/**/*.{ts,tsx}"])
    assert ids(run([r], context_files=["web/src/ui/button.tsx"])) == ["front"]
    assert ids(run([r], context_files=["other/web/src/ui/button.tsx"])) == []
    assert ids(run([r], context_files=["web/test/button.tsx"])) == []


def test_disabled_auto_and_index_rules_are_ignored() -> None:
    rules = [
        rule("py", activation="auto", globs=["*.py"], enabled=False),
        rule("req", activation="agent_requested", enabled=False),
    ]
    c = run(rules, context_files=["a.py"])
    assert ids(c) == [] and c.index == []


def test_tag_filter_narrows_always_auto_and_index_but_not_named() -> None:
    rules = [
        rule("a-py", activation="always", tags=["python"]),
        rule("a-js", activation="always", tags=["js"]),
        rule("a-none", activation="always"),
        rule("auto-py", activation="auto", globs=["*.py"], tags=["python", "style"]),
        rule("auto-js", activation="auto", globs=["*.py"], tags=["js"]),
        rule("idx-py", activation="agent_requested", tags=["python"]),
        rule("idx-js", activation="agent_requested", tags=["js"]),
        rule("named-js", activation="manual", tags=["js"]),
    ]
    c = run(rules, context_files=["x.py"], tags=["python"], rule_ids=["named-js"])
    assert ids(c) == ["a-py", "auto-py", "named-js"]
    assert [e["id"] for e in c.index] == ["idx-py"]
    c = run(rules, context_files=["x.py"], tags=["python", "js"])
    assert ids(c) == ["a-js", "a-py", "auto-js", "auto-py"]
    assert ids(run(rules, context_files=["x.py"])) == ["a-js", "a-none", "a-py", "auto-js", "auto-py"]


def test_agent_filter() -> None:
    rules = [
        rule("for-claude", activation="always", tags=["agent:claude"]),
        rule("for-cursor", activation="always", tags=["agent:cursor", "agent:copilot"]),
        rule("for-all", activation="always"),
        rule("named", activation="manual", tags=["agent:cursor"]),
        rule("idx", activation="agent_requested", tags=["agent:cursor"]),
    ]
    assert ids(run(rules)) == ["for-all"]
    c = run(rules, agent="claude", rule_ids=["named"])
    assert ids(c) == ["for-all", "for-claude", "named"]
    assert c.index == []
    c = run(rules, agent="copilot")
    assert ids(c) == ["for-all", "for-cursor"]
    assert [e["id"] for e in run(rules, agent="cursor").index] == ["idx"]


# -- step 2: imports ----------------------------------------------------------------


def test_imports_are_expanded_depth_first_and_each_rule_appears_once() -> None:
    rules = [
        rule("root", activation="always", imports=["a", "b"]),
        rule("a", imports=["shared"]),
        rule("b", imports=["shared", "c"]),
        rule("c"),
        rule("shared", activation="agent_requested", description="also in the index otherwise"),
        rule("unrelated"),
    ]
    c = run(rules)
    assert sorted(ids(c)) == ["a", "b", "c", "root", "shared"]
    assert why(c) == {
        "root": "always", "a": "imported by root", "b": "imported by root",
        "shared": "imported by a", "c": "imported by b",
    }
    assert c.index == []
    assert c.markdown.count("<!-- rule:shared@1 -->") == 1


def test_import_of_an_already_selected_rule_keeps_its_reason() -> None:
    rules = [rule("x", activation="always", imports=["y"]), rule("y", activation="always")]
    assert why(run(rules)) == {"x": "always", "y": "always"}


def problems(c: Composition) -> dict[str, str]:
    return {p["id"]: p["problem"] for p in c.problems}


def test_import_cycle_skips_its_members_and_names_the_path() -> None:
    rules = [
        rule("a", activation="always", imports=["b"]),
        rule("b", activation="always", imports=["c"]),
        rule("c", imports=["a"]),
        rule("fine", activation="always"),
    ]
    c = run(rules)
    assert ids(c) == ["fine"]
    assert problems(c) == {"a": "import cycle: a -> b -> c -> a", "b": "import cycle: a -> b -> c -> a"}
    assert c.manifest()["problems"] == [
        {"id": "a", "version": 1, "kind": "import_cycle", "problem": "import cycle: a -> b -> c -> a"},
        {"id": "b", "version": 1, "kind": "import_cycle", "problem": "import cycle: a -> b -> c -> a"},
    ]
    assert Composition.from_dict(c.to_dict()).problems == c.problems


def test_a_rule_importing_a_cycle_is_skipped_with_the_cause() -> None:
    rules = [rule("root", activation="always", imports=["x"]), rule("x", imports=["y"]), rule("y", imports=["x"])]
    c = run(rules)
    assert ids(c) == []
    assert problems(c) == {"root": "rule 'root' imports 'x', which cannot be composed: import cycle: x -> y -> x"}


def test_cycle_in_unselected_rules_is_harmless() -> None:
    rules = [rule("ok", activation="always"), rule("p", imports=["q"]), rule("q", imports=["p"])]
    c = run(rules)
    assert ids(c) == ["ok"] and c.problems == []


def test_missing_import_skips_the_rules_that_need_it() -> None:
    rules = [rule("a", activation="always", imports=["b"]), rule("b", imports=["gone"]),
             rule("c", activation="always", imports=["d"]), rule("d")]
    c = run(rules)
    assert ids(c) == ["c", "d"]
    assert problems(c) == {
        "a": "rule 'a' imports 'b', which cannot be composed: rule 'b' imports 'gone', which does not exist"
    }


def test_named_unknown_import_target_does_not_fail_the_others() -> None:
    rules = [rule("broken", activation="manual", imports=["gone"]), rule("ok", activation="always")]
    c = run(rules, rule_ids=["broken"])
    assert ids(c) == ["ok"] and list(problems(c)) == ["broken"]


def chain(length: int) -> list[Rule]:
    """r0 (always) imports r1, which imports r2, ... : ``length`` import steps."""
    return [
        rule(f"r{i}", activation="always" if i == 0 else "manual", imports=[f"r{i + 1}"] if i < length else [])
        for i in range(length + 1)
    ]


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_import_depth_limit_allows_exactly_limit_steps(limit: int) -> None:
    c = run(chain(limit), ComposeOptions(max_import_depth=limit))
    assert len(c.included) == limit + 1
    c = run(chain(limit + 1), ComposeOptions(max_import_depth=limit))
    assert c.included == []
    assert re.fullmatch(rf"import chain r0 -> .* -> r{limit + 1} is deeper than the limit of {limit} "
                        r"\(max_import_depth\)", problems(c)["r0"])


def test_default_import_depth_is_five() -> None:
    assert len(run(chain(5)).included) == 6
    assert "deeper than the limit of 5" in problems(run(chain(6)))["r0"]


def test_a_long_chain_needs_no_recursion() -> None:
    c = run(chain(5000))
    assert problems(c)["r0"].startswith("import chain r0 -> r1 -> r2 -> r3 -> r4 -> r5 -> r6 is deeper")


class CountingRules(dict[str, Rule]):
    """The rule set, counting how often the engine looks each rule up."""

    def __init__(self, rules: list[Rule]) -> None:
        super().__init__((r.id, r) for r in rules)
        self.lookups: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.lookups[key] = self.lookups.get(key, 0) + 1
        return super().get(key, default)


def diamond(layers: int, width: int) -> list[Rule]:
    """``layers`` layers of ``width`` rules; each rule imports the whole next layer; layer 0 is ``always``."""
    return [
        rule(f"l{layer}-{i}", activation="always" if layer == 0 else "manual",
             imports=[f"l{layer + 1}-{j}" for j in range(width)] if layer + 1 < layers else [])
        for layer in range(layers) for i in range(width)
    ]


def test_diamond_dag_expands_each_rule_once_at_the_default_limits() -> None:
    # 6 layers (5 import steps: the default max_import_depth); without a memo the walk takes
    # width^5 paths per root (24^5 = 8 million here); with it each import is followed once.
    layers, width = 6, 24
    rules = CountingRules(diamond(layers, width))
    c = compose(rules, ComposeRequest.from_args(), ComposeOptions())
    assert len(c.included) == layers * width and c.problems == []
    assert rules.lookups == {f"l{layer}-{i}": width for layer in range(1, layers) for i in range(width)}
    assert why(c)["l1-0"] == "imported by l0-0" and why(c)["l5-3"] == "imported by l4-0"


def test_disabled_import_is_dropped_with_reason() -> None:
    rules = [rule("a", activation="always", imports=["b"]), rule("b", enabled=False)]
    c = run(rules)
    assert ids(c) == ["a"] and dropped(c) == {"b": "disabled (imported by a)"}


def test_max_rules_limit() -> None:
    rules = [rule(f"r{i}", activation="always") for i in range(4)]
    assert len(run(rules, ComposeOptions(max_rules=4)).included) == 4
    with pytest.raises(LimitExceeded, match="composition selects 4 rules; the limit is 3"):
        run(rules, ComposeOptions(max_rules=3))


# -- step 3: overrides and settings conflicts --------------------------------------------


def test_overrides_drop_the_overridden_rule() -> None:
    rules = [
        rule("base", activation="always", priority=0),
        rule("team", activation="always", priority=5, overrides=["base", "not-selected"]),
    ]
    c = run(rules)
    assert ids(c) == ["team"] and dropped(c) == {"base": "overridden by team"}
    assert "Body of base" not in c.markdown


def test_override_applies_only_when_both_are_selected() -> None:
    rules = [rule("base", activation="always"), rule("team", activation="manual", overrides=["base"])]
    assert ids(run(rules)) == ["base"]
    assert ids(run(rules, rule_ids=["team"])) == ["team"]


def test_mutual_overrides_keep_the_stronger_rule() -> None:
    rules = [
        rule("weak", activation="always", priority=1, overrides=["strong"]),
        rule("strong", activation="always", priority=2, overrides=["weak"]),
    ]
    c = run(rules)
    assert ids(c) == ["strong"] and dropped(c) == {"weak": "overridden by strong"}
    tie = [
        rule("old", activation="always", overrides=["new"], updated_at=T0),
        rule("new", activation="always", overrides=["old"], updated_at=T0 + 10),
    ]
    assert ids(run(tie)) == ["new"]


def test_settings_conflict_winner_by_priority_then_updated_at_then_id() -> None:
    rules = [
        rule("low", activation="always", priority=1, settings={"indent": 2, "quotes": "single", "only-low": 1}),
        rule("high", activation="always", priority=9, settings={"indent": 4}),
        rule("older", activation="always", priority=1, settings={"quotes": "double"}, updated_at=T0 - 100),
    ]
    c = run(rules)
    assert c.settings == {"indent": 4, "only-low": 1, "quotes": "single"}
    conflicts = {x.key: x for x in c.conflicts}
    assert set(conflicts) == {"indent", "quotes"}
    assert conflicts["indent"].winner == "high" and conflicts["indent"].losers == (("low", 2),)
    assert conflicts["quotes"].winner == "low" and conflicts["quotes"].losers == (("older", "double"),)
    assert c.manifest()["conflicts"][0] == {
        "key": "indent", "winner": {"rule": "high", "value": 4}, "losers": [{"rule": "low", "value": 2}]
    }
    same_time = [
        rule("b", activation="always", settings={"k": "from b"}),
        rule("a", activation="always", settings={"k": "from a"}),
    ]
    c = run(same_time)
    assert c.settings == {"k": "from a"} and c.conflicts[0].losers == (("b", "from b"),)


def test_equal_settings_are_not_a_conflict() -> None:
    rules = [rule("a", activation="always", settings={"k": [1]}), rule("b", activation="always", settings={"k": [1]})]
    c = run(rules)
    assert c.settings == {"k": [1]} and c.conflicts == []


def test_overridden_rules_take_no_part_in_settings() -> None:
    rules = [
        rule("base", activation="always", priority=10, settings={"k": "base"}),
        rule("team", activation="always", overrides=["base"], settings={"k": "team"}),
    ]
    c = run(rules)
    assert c.settings == {"k": "team"} and c.conflicts == []


# -- step 4: order, determinism ---------------------------------------------------------------


def test_order_is_priority_ascending_then_id() -> None:
    rules = [
        rule("z", activation="always", priority=0),
        rule("a", activation="always", priority=0),
        rule("top", activation="always", priority=100),
        rule("neg", activation="always", priority=-5),
    ]
    c = run(rules)
    assert ids(c) == ["neg", "a", "z", "top"]
    markers = re.findall(r"<!-- rule:([a-z0-9._-]+)@(\d+) -->", c.markdown)
    assert markers == [("neg", "1"), ("a", "1"), ("z", "1"), ("top", "1")]


def _mixed_rules() -> list[Rule]:
    return [
        rule("always-a", activation="always", priority=3, settings={"k": 1}),
        rule("always-b", activation="always", settings={"k": 2}, imports=["lib"]),
        rule("lib", body="Library rule.\n"),
        rule("py", activation="auto", globs=["*.py"], priority=1, overrides=["old-py"]),
        rule("old-py", activation="auto", globs=["*.py"]),
        rule("idx", activation="agent_requested", description="idx"),
        rule("idx2", activation="agent_requested", description="second"),
    ]


def test_composition_is_deterministic_whatever_the_input_order() -> None:
    rules = _mixed_rules()
    request = {"context_files": ["b.py", "a.py"], "token_budget": 1000}
    first = run(rules, **request).to_dict()
    shuffler = random.Random(7)
    for _ in range(10):
        shuffled = rules[:]
        shuffler.shuffle(shuffled)
        assert run(shuffled, **request).to_dict() == first


def test_composition_hash_changes_with_content_and_settings() -> None:
    rules = _mixed_rules()
    base = run(rules, context_files=["a.py"]).composition_hash
    assert run(rules, context_files=["a.py"]).composition_hash == base
    assert run(rules).composition_hash != base  # py no longer selected
    bumped = [r if r.id != "lib" else rule("lib", body="Library rule.\n", version=2) for r in rules]
    assert run(bumped, context_files=["a.py"]).composition_hash != base  # marker carries the version
    resettled = [r if r.id != "always-a" else rule("always-a", activation="always", priority=3, settings={"k": 9})
                 for r in rules]
    c = run(resettled, context_files=["a.py"])
    assert c.markdown == run(rules, context_files=["a.py"]).markdown
    assert c.composition_hash != base  # same text, different settings


def test_request_normalisation() -> None:
    r = ComposeRequest.from_args(["./a.py", "a.py", "b\\c.py"], ["y", "x", "y"], ["m", "m"], "claude", 10)
    assert r.context_files == ("a.py", "b/c.py")
    assert r.tags == ("x", "y") and r.rule_ids == ("m",)
    assert r.key() == ComposeRequest.from_args(["a.py", "b/c.py"], ["x", "y"], ["m"], "claude", 10).key()
    assert ComposeRequest.from_args().key() != r.key()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token_budget": 0}, "token_budget must be a positive integer"),
        ({"token_budget": True}, "token_budget must be a positive integer"),
        ({"agent": "  "}, "agent must be a non-empty name"),
        ({"context_files": ["/"]}, "context_files entries must be non-empty paths"),
        ({"context_files": [f"f{i}.py" for i in range(1001)]}, "context_files has 1001 entries; the limit is 1000"),
        ({"rule_ids": ["Not Valid"]}, "rule_ids entry 'Not Valid' is not a valid rule id"),
    ],
)
def test_bad_requests(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        ComposeRequest.from_args(**kwargs)


# -- step 5: token budget ---------------------------------------------------------------------


def big(n_tokens: int, word: str = "word") -> str:
    """A body whose estimate is about ``n_tokens`` (no line breaks)."""
    return " ".join([word] * (n_tokens * 4 // (len(word) + 1)))


def _check_never_cut(c: Composition, rules: list[Rule]) -> None:
    """Every included rule appears either whole or as its one-line stub, never truncated."""
    by_id = {r.id: r for r in rules}
    for item in c.included:
        r = by_id[item["id"]]
        if item["stubbed"]:
            assert f"<!-- rule:{r.id}@{r.version} stub -->\n- {r.id}: " in c.markdown
            assert r.body.strip() not in c.markdown
        else:
            assert f"<!-- rule:{r.id}@{r.version} -->\n{r.body.strip()}\n" in c.markdown


def test_no_budget_keeps_everything() -> None:
    rules = [rule("a", big(500), activation="always"), rule("b", big(500), activation="auto", globs=["*"])]
    c = run(rules, context_files=["x"])
    assert not any(i["stubbed"] for i in c.included) and c.token_budget is None


def test_budget_never_cuts_always_or_named_rules() -> None:
    rules = [
        rule("always", big(300, "alpha"), activation="always"),
        rule("named", big(300, "beta"), activation="manual"),
        rule("auto", big(300, "gamma"), activation="auto", globs=["*.py"], description="Python things"),
    ]
    c = run(rules, context_files=["a.py"], rule_ids=["named"], token_budget=680)
    stubbed = {i["id"]: i["stubbed"] for i in c.included}
    assert stubbed == {"always": False, "named": False, "auto": True}
    assert dropped(c) == {"auto": "stubbed: over token budget"}
    assert "- auto: Python things" in c.markdown
    assert estimate_tokens(c.markdown) == c.token_estimate <= 680
    _check_never_cut(c, rules)


def test_budget_fills_optional_rules_by_priority_and_stubs_the_rest() -> None:
    rules = [
        rule("pinned", big(100, "pin"), activation="always"),
        rule("hi", big(100, "high"), activation="auto", globs=["*"], priority=10),
        rule("mid", big(100, "middle"), activation="auto", globs=["*"], priority=5),
        rule("lo", big(100, "low"), activation="auto", globs=["*"], priority=1, description=""),
    ]
    cost = {r.id: estimate_tokens(r.body) for r in rules}
    budget = cost["pinned"] + cost["hi"] + cost["mid"] + 80  # room for markers, a stub and the summary line
    c = run(rules, context_files=["f"], token_budget=budget)
    assert {i["id"] for i in c.included if i["stubbed"]} == {"lo"}
    assert "- lo: (no description)" in c.markdown
    _check_never_cut(c, rules)
    assert c.token_budget == budget and c.token_estimate == estimate_tokens(c.markdown) <= budget
    assert not any(i["stubbed"] for i in run(rules, context_files=["f"], token_budget=10_000).included)


def test_budget_covers_markers_and_summarises_stubs_that_do_not_fit() -> None:
    rules = [rule("pinned", "Pinned.\n", activation="always")] + [
        rule(f"opt-{i:03}", big(50), activation="auto", globs=["*"], priority=i % 7, description="x" * 60)
        for i in range(300)
    ]
    for budget in (60, 100, 400, 1000, 5000, 20000):
        c = run(rules, context_files=["f"], token_budget=budget)
        assert estimate_tokens(c.markdown) <= budget, budget
        left_out = [d for d in c.dropped if d["reason"] == "omitted: over token budget"]
        assert len(c.included) + len(left_out) == 301
        if left_out:
            assert f"{len(left_out)} more matching rule" in c.markdown
        # the strongest rules come first: nothing omitted is stronger than something stubbed or kept
        kept = {i["id"] for i in c.included}
        strongest_left_out = max((int(d["id"][4:]) % 7 for d in left_out), default=-1)
        assert all(int(i[4:]) % 7 >= strongest_left_out for i in kept if i != "pinned"), budget


def test_budget_too_small_for_the_pinned_rules_names_the_smallest_that_fits() -> None:
    rules = [rule("pinned", big(100), activation="always"), rule("opt", big(100), activation="auto", globs=["*"]),
             rule("ask", activation="agent_requested", description="ask me")]
    with pytest.raises(LimitExceeded, match=r"token_budget 50 is too small: .* the smallest budget that fits is (\d+)"
                       ) as refused:
        run(rules, context_files=["f"], token_budget=50)
    smallest = int(re.findall(r"\d+", str(refused.value))[-1])
    c = run(rules, context_files=["f"], token_budget=smallest)
    assert estimate_tokens(c.markdown) <= smallest and "1 more matching rule left out" in c.markdown
    assert "- 1 more: see `list_rules`" in c.markdown
    with pytest.raises(LimitExceeded):
        run(rules, context_files=["f"], token_budget=smallest - 1)


def test_budget_skips_a_big_rule_but_keeps_a_smaller_weaker_one() -> None:
    rules = [
        rule("huge", big(1000), activation="auto", globs=["*"], priority=10),
        rule("tiny", "Short.\n", activation="auto", globs=["*"], priority=1),
    ]
    c = run(rules, context_files=["f"], token_budget=100)
    assert {i["id"]: i["stubbed"] for i in c.included} == {"tiny": False, "huge": True}
    _check_never_cut(c, rules)


def test_imported_rules_are_optional_under_budget() -> None:
    rules = [rule("root", "Root.\n", activation="always", imports=["dep"]), rule("dep", big(400))]
    c = run(rules, token_budget=50)
    assert {i["id"]: i["stubbed"] for i in c.included} == {"root": False, "dep": True}


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("ab\ncd") == 3


# -- step 6: render and manifest ------------------------------------------------------------


def test_render_markers_manifest_and_round_trip() -> None:
    rules = [
        rule("a", "\n\nFirst.\n\n", activation="always", version=3),
        rule("b", "Second.", activation="always", priority=1, version=12),
    ]
    c = run(rules)
    assert c.markdown == "<!-- rule:a@3 -->\nFirst.\n\n<!-- rule:b@12 -->\nSecond.\n"
    m = c.manifest()
    assert set(m) == {
        "composition_hash", "token_estimate", "token_budget", "included", "dropped", "conflicts", "settings", "index",
        "problems",
    }
    assert m["included"][0] == {"id": "a", "version": 3, "why": "always", "priority": 0, "stubbed": False,
                                "tokens": estimate_tokens("First.")}
    assert Composition.from_dict(c.to_dict()).to_dict() == c.to_dict()


def test_dropped_is_sorted_and_conflicts_survive_round_trip() -> None:
    rules = [
        rule("z", activation="always", overrides=["y"], settings={"k": 1}),
        rule("y", activation="always"),
        rule("x", activation="always", settings={"k": 2}, priority=-1),
        rule("w", enabled=False),
    ]
    c = run(rules, rule_ids=["w"])
    assert [d["id"] for d in c.dropped] == ["w", "y"]
    again = Composition.from_dict(c.to_dict())
    assert again.conflicts == c.conflicts and again.composition_hash == c.composition_hash


# -- the service: store + engine + cache ----------------------------------------------------------


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Composition] = {}
        self.hits = 0

    def get(self, key: str) -> Composition | None:
        hit = self.data.get(key)
        self.hits += hit is not None
        return hit

    def put(self, key: str, composition: Composition) -> None:
        self.data[key] = composition


@pytest.mark.both_backends
def test_service_follows_writes_including_other_stores(store: RuleStoreBase, reopen_store: Any) -> None:
    cache = DictCache()
    service = ComposeService(store, cache)
    store.create({"id": "a", "body": "one\n", "activation": "always"})
    request = ComposeRequest.from_args()
    first = service.compose(request)
    assert "one" in first.markdown
    assert service.compose(request) is first and cache.hits == 1
    reopen_store().update("a", 1, {"body": "two\n"})  # another writer (as another process would be)
    second = service.compose(request)
    assert "two" in second.markdown and "<!-- rule:a@2 -->" in second.markdown
    assert len(cache.data) == 2  # keys carry the generation


@pytest.mark.both_backends
def test_service_without_cache_and_cache_key_shape(store: RuleStoreBase) -> None:
    service = ComposeService(store, options=ComposeOptions(max_import_depth=1))
    store.create({"id": "a", "body": "x", "activation": "always", "imports": ["b"]})
    store.create({"id": "b", "body": "y", "imports": ["c"]})
    store.create({"id": "c", "body": "z"})
    assert "deeper than the limit of 1" in service.compose(ComposeRequest.from_args()).problems[0]["problem"]
    ruleset = service.ruleset()
    key = service.cache_key(ComposeRequest.from_args(tags=["t"]), ruleset)
    assert key.startswith(f"c:{ruleset.fingerprint}:")
    assert key != service.cache_key(ComposeRequest.from_args(), ruleset)
    assert service.ruleset() is service.ruleset()


def test_a_stored_glob_over_tightened_limits_skips_its_rule() -> None:
    rules = [rule("wild", activation="auto", globs=["*a*b*c*"]), rule("tame", activation="auto", globs=["*.py"])]
    c = run(rules, ComposeOptions(globs=GlobLimits(max_wildcards=2)), context_files=["x.py"])
    assert ids(c) == ["tame"]
    assert c.problems[0]["kind"] == "invalid_glob" and "(glob_max_wildcards)" in c.problems[0]["problem"]


def test_every_importer_of_a_broken_rule_is_skipped_and_disabled_imports_deep_down_are_dropped() -> None:
    rules = [rule("one", activation="always", imports=["bad"]), rule("two", activation="always", imports=["bad"]),
             rule("bad", imports=["gone"]), rule("three", activation="always", imports=["mid"]),
             rule("mid", imports=["off"]), rule("off", enabled=False)]
    c = run(rules)
    assert sorted(problems(c)) == ["one", "two"] and ids(c) == ["mid", "three"]
    assert dropped(c) == {"off": "disabled (imported by mid)"}


def test_import_problem_sees_the_candidate_beside_the_stored_rules() -> None:
    stored = {r.id: r for r in [rule("a", imports=["b"]), rule("b")]}
    assert import_problem(stored, rule("b", imports=["a"]), ComposeOptions()) == (
        "import_cycle", "import cycle: b -> a -> b")
    assert import_problem(stored, rule("c", imports=["a"]), ComposeOptions()) is None
