"""Property tests (hypothesis, derandomized): every tool's arguments, and the composition inputs.

Tools are called through the real MCP server in-process; whatever the arguments, the call ends in a
result or an ``isError`` result with a message, never an exception or a traceback. The composition engine,
fed random rule sets (globs, import graphs with cycles, unicode, empty and maximal sizes), either composes
or raises a domain error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relwire import assert_no_traceback

from otel_mcp.compose.engine import ComposeOptions, ComposeRequest, compose
from otel_mcp.config import Settings
from otel_mcp.errors import RuleError
from otel_mcp.server.app import build_server
from otel_mcp.server.context import RulesContext
from otel_mcp.store.model import Rule, build_spec

TOOL_EXAMPLES = 40
COMPOSE_EXAMPLES = 150
def profile(examples: int) -> settings:
    return settings(
        max_examples=examples, derandomize=True, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )

text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
ARGUMENTS = ("id", "body", "description", "activation", "globs", "exclude_globs", "tags", "priority", "imports",
             "overrides", "settings", "enabled", "expected_version", "version", "to_version", "context_files",
             "rule_ids", "agent", "token_budget", "query", "limit", "cursor", "directory", "format")
plausible = {
    "id": st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True) | text,
    "body": text,
    "activation": st.sampled_from(["always", "auto", "agent_requested", "manual", "bogus"]),
    "globs": st.lists(text, max_size=5),
    "context_files": st.lists(st.sampled_from(["a.py", "src/x.ts", "../../etc/passwd", "", "漢.md"]) | text),
    "expected_version": st.integers(-2, 5),
    "limit": st.integers(-5, 300),
    "directory": st.sampled_from([".", "..", "../..", "/etc", "sub", "\x00", "a/../../b"]) | text,
}
tool_arguments = st.dictionaries(
    st.sampled_from(ARGUMENTS), json_values, max_size=6
).flatmap(lambda base: st.fixed_dictionaries({k: plausible.get(k, json_values) for k in base}))


def test_every_tool_survives_arbitrary_arguments(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    rules = RulesContext.open(Settings(db=tmp_path / "rules.db", files_root=root, cache=False))
    server = build_server(rules)
    from mcp import Client

    async def run_one(tool: str, arguments: dict[str, Any]) -> None:
        async with Client(server) as client:
            result = await client.call_tool(tool, arguments)
            body = "\n".join(getattr(c, "text", "") for c in result.content)
            assert_no_traceback(body)
            if result.is_error:
                assert body.strip(), "an error result without a message"

    tools = [t.name for t in anyio.run(server.list_tools)]
    assert len(tools) >= 12

    @profile(TOOL_EXAMPLES * len(tools))
    @given(st.sampled_from(tools), tool_arguments)
    def check(tool: str, arguments: dict[str, Any]) -> None:
        anyio.run(run_one, tool, arguments)

    try:
        check()
    finally:
        rules.close()


rule_ids = st.sampled_from([f"r{i}" for i in range(8)])


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for i, rule_id in enumerate(draw(st.lists(rule_ids, unique=True, max_size=8))):
        fields = {
            "id": rule_id,
            "body": draw(st.text(max_size=60)) or "x",
            "activation": draw(st.sampled_from(["always", "auto", "agent_requested", "manual"])),
            "globs": draw(st.lists(st.sampled_from(["*.py", "src/**", "!x", "**/*.ts", "[", "漢/*", ""]), max_size=3)),
            "tags": draw(st.lists(st.sampled_from(["a", "b", "agent:x"]), max_size=2, unique=True)),
            "priority": draw(st.integers(-3, 3)),
            "imports": draw(st.lists(rule_ids, max_size=3, unique=True)),
            "overrides": draw(st.lists(rule_ids, max_size=2, unique=True)),
            "settings": draw(st.dictionaries(st.sampled_from(["k", "m"]), st.integers(0, 2), max_size=2)),
            "enabled": draw(st.booleans()),
        }
        try:
            spec = build_spec(fields)
        except RuleError:
            continue
        rules[rule_id] = Rule(**spec.__dict__, version=1, etag=spec.content_hash(), created_at=float(i),
                              updated_at=float(i))
    return rules


@profile(COMPOSE_EXAMPLES)
@given(
    rule_sets(),
    st.lists(st.sampled_from(["a.py", "src/b.ts", "漢/c.md", "x"]), max_size=4),
    st.lists(rule_ids, max_size=3),
    st.none() | st.integers(1, 500),
    st.integers(1, 6),
    st.integers(1, 10),
)
def test_composition_composes_or_raises_a_domain_error(
    rules: dict[str, Rule], files: list[str], named: list[str], budget: int | None, depth: int, max_rules: int
) -> None:
    try:
        request = ComposeRequest.from_args(files, None, named, None, budget)
        first = compose(rules, request, ComposeOptions(max_import_depth=depth, max_rules=max_rules))
    except RuleError as exc:
        assert str(exc)
        return
    again = compose(rules, request, ComposeOptions(max_import_depth=depth, max_rules=max_rules))
    assert again.composition_hash == first.composition_hash  # deterministic
    assert len(first.included) <= max_rules
    if budget is not None:
        pinned = sum(1 for i in first.included if i.get("why") in ("always", "named in rule_ids"))
        assert first.token_estimate <= budget or pinned > 0
