"""Scenarios run against the real server over each transport (see test_server_stdio/test_server_http).

Each takes a connected ``mcp.Client``, the ``McpServer`` it talks to (for its database and files
root) and the ``ToolCalls`` helper from conftest. Kept in a plain module so both transport test
files run exactly the same checks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from otel_mcp.config import Settings

TOOLS = {
    "list_rules", "get_rule", "create_rule", "update_rule", "delete_rule", "compose_rules", "search_rules",
    "rule_history", "rollback_rule", "validate_rule", "import_rules", "export_rules", "warm_cache",
}
MAX_BODY = Settings.max_body_bytes


async def done_when_flow(client: Client, server: Any, calls: Any, corpus: Path) -> None:
    """The issue's "Done when": create, compose, update (with a conflict shown), import a folder of .mdc, history."""
    assert {t.name for t in (await client.list_tools()).tools} == TOOLS

    created = await calls.ok(client, "create_rule", {
        "id": "py-style", "body": "Use type hints.\n", "description": "Python style", "activation": "auto",
        "globs": ["**/*.py"], "tags": ["python"], "priority": 2, "settings": {"indent": 4},
    })
    assert created["version"] == 1 and "body" not in created and created["body_bytes"] == len("Use type hints.\n")
    await calls.ok(client, "create_rule", {"id": "base", "body": "Be kind.\n", "activation": "always",
                                           "settings": {"indent": 2}})

    markdown, manifest = await calls.document(client, "compose_rules", {"context_files": ["src/app.py"]})
    assert markdown == "<!-- rule:base@1 -->\nBe kind.\n\n<!-- rule:py-style@1 -->\nUse type hints.\n"
    assert [(i["id"], i["why"]) for i in manifest["included"]] == [("base", "always"),
                                                                  ("py-style", "glob matched src/app.py")]
    assert manifest["conflicts"] == [{"key": "indent", "winner": {"rule": "py-style", "value": 4},
                                      "losers": [{"rule": "base", "value": 2}]}]
    assert len(manifest["composition_hash"]) == 64

    updated = await calls.ok(client, "update_rule", {"id": "py-style", "expected_version": 1,
                                                     "body": "Use type hints everywhere.\n"})
    assert updated["version"] == 2
    conflict = await calls.error(client, "update_rule", {"id": "py-style", "expected_version": 1, "body": "lost"})
    assert "version conflict on rule 'py-style': expected version 1, current version is 2" in conflict
    body, rule = await calls.document(client, "get_rule", {"id": "py-style"})
    assert body == "Use type hints everywhere.\n" and rule["version"] == 2 and "body" not in rule

    remarkdown, remanifest = await calls.document(client, "compose_rules", {"context_files": ["src/app.py"]})
    assert "<!-- rule:py-style@2 -->\nUse type hints everywhere." in remarkdown
    assert remanifest["composition_hash"] != manifest["composition_hash"]

    target = server.files_root / "cursor-rules"
    shutil.copytree(corpus, target)
    expected = sorted(p.name for p in target.glob("*.mdc"))
    imported = await calls.ok(client, "import_rules", {"directory": "cursor-rules"})
    assert imported["counts"] == {"created": len(expected)}, [f for f in imported["files"] if f["status"] == "error"]
    assert sorted(f["path"] for f in imported["files"]) == expected
    again = await calls.ok(client, "import_rules", {"directory": "cursor-rules", "format": "cursor"})
    assert again["counts"] == {"unchanged": len(expected)}
    listed, cursor = [], None
    while True:
        page = await calls.ok(client, "list_rules", {"limit": 100, **({"cursor": cursor} if cursor else {})})
        listed += [r["id"] for r in page["rules"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(listed) == len(expected) + 2 and listed == sorted(listed)

    history = await calls.ok(client, "rule_history", {"id": "py-style"})
    assert [(v["version"], v["operation"]) for v in history["versions"]] == [(2, "update"), (1, "create")]
    some_import = imported["files"][0]["rule_id"]
    assert [v["operation"] for v in (await calls.ok(client, "rule_history", {"id": some_import}))["versions"]] == [
        "import"
    ]

    rolled = await calls.ok(client, "rollback_rule", {"id": "py-style", "to_version": 1, "expected_version": 2})
    assert rolled["version"] == 3 and rolled["etag"] == created["etag"]
    deleted = await calls.ok(client, "delete_rule", {"id": "base", "expected_version": 1})
    assert deleted == {"id": "base", "deleted": True, "version": 2}
    assert "<!-- rule:base@" not in (await calls.document(client, "compose_rules", {}))[0]


async def tool_surface(client: Client, server: Any, calls: Any) -> None:
    """Each tool's happy path beyond the main flow: filters, search, validate, export, versions."""
    await calls.ok(client, "create_rule", {"id": "a", "body": "alpha apples\n", "tags": ["fruit"]})
    await calls.ok(client, "create_rule", {"id": "b", "body": "beta bananas\n", "activation": "always"})
    await calls.ok(client, "update_rule", {"id": "a", "expected_version": 1, "description": "about apples"})

    assert [r["id"] for r in (await calls.ok(client, "list_rules", {"tag": "fruit"}))["rules"]] == ["a"]
    assert [r["id"] for r in (await calls.ok(client, "list_rules", {"activation": "always"}))["rules"]] == ["b"]
    page = await calls.ok(client, "list_rules", {"limit": 1})
    assert [r["id"] for r in page["rules"]] == ["a"] and page["next_cursor"] == "a"
    assert all("body" not in r for r in page["rules"])

    hits = (await calls.ok(client, "search_rules", {"query": "bananas"}))["results"]
    assert [h["id"] for h in hits] == ["b"] and "[bananas]" in hits[0]["snippet"]
    assert (await calls.ok(client, "search_rules", {"query": "apples"}))["results"][0]["id"] == "a"

    old = await calls.ok(client, "get_rule", {"id": "a", "version": 1})
    assert old["version"] == 1 and old["description"] == ""

    valid = await calls.ok(client, "validate_rule", {"id": "new", "body": "x", "imports": ["b", "later"],
                                                     "overrides": ["ghost"]})
    assert valid["valid"] is True and len(valid["etag"]) == 64
    assert valid["warnings"] == ["import 'later' does not exist yet", "override 'ghost' does not exist"]
    invalid = await calls.ok(client, "validate_rule", {"id": "new", "body": "x", "activation": "auto"})
    assert invalid == {"valid": False, "errors": ["an 'auto' rule needs at least one glob"], "warnings": []}

    exported = await calls.ok(client, "export_rules", {"directory": "out"})
    assert exported["written"] == 2
    assert sorted(p.name for p in (server.files_root / "out").iterdir()) == ["a.mdc", "b.mdc"]
    await calls.ok(client, "export_rules", {"directory": "agents", "format": "agents"})
    assert '<!-- otel-mcp:rule {"id":"b"' in (server.files_root / "agents" / "AGENTS.md").read_text()


def _bad_calls() -> list[tuple[str, dict[str, Any], str]]:
    """(tool, arguments, a fragment the error message must contain)."""
    over = "x" * (MAX_BODY + 1)
    return [
        ("no_such_tool", {}, "Unknown tool: no_such_tool"),
        # list_rules
        ("list_rules", {"activation": "sometimes"}, "activation"),
        ("list_rules", {"limit": 0}, "limit"),
        ("list_rules", {"limit": 201}, "limit"),
        ("list_rules", {"limit": "many"}, "limit"),
        ("list_rules", {"enabled": "perhaps"}, "enabled"),
        ("list_rules", {"cursor": 5}, "cursor"),
        # get_rule
        ("get_rule", {}, "id"),
        ("get_rule", {"id": 5}, "id"),
        ("get_rule", {"id": "ghost"}, "rule 'ghost' does not exist"),
        ("get_rule", {"id": "a", "version": 99}, "version 99 of rule 'a' does not exist"),
        ("get_rule", {"id": "a", "version": 0}, "version"),
        ("get_rule", {"id": "x" * 129}, "id"),
        # create_rule
        ("create_rule", {"id": "new"}, "body"),
        ("create_rule", {"body": "x"}, "id"),
        ("create_rule", {"id": "new", "body": 5}, "body"),
        ("create_rule", {"id": "Bad Id", "body": "x"}, "'Bad Id' is not a valid rule id"),
        ("create_rule", {"id": "../etc", "body": "x"}, "is not a valid rule id"),
        ("create_rule", {"id": "a", "body": "x"}, "rule 'a' already exists; use update_rule"),
        ("create_rule", {"id": "new", "body": over}, f"body is {MAX_BODY + 1} bytes; the limit is {MAX_BODY} bytes"),
        ("create_rule", {"id": "new", "body": "x", "globs": ["src/{a,b"]}, "unclosed '{'"),
        ("create_rule", {"id": "new", "body": "x", "globs": ["!*.py"]}, "negation is not supported"),
        ("create_rule", {"id": "new", "body": "x", "exclude_globs": ["[x"]}, "unclosed '['"),
        ("create_rule", {"id": "new", "body": "x", "globs": "*.py"}, "globs"),
        ("create_rule", {"id": "new", "body": "x", "activation": "auto"}, "an 'auto' rule needs at least one glob"),
        ("create_rule", {"id": "new", "body": "x", "activation": "often"}, "activation"),
        ("create_rule", {"id": "new", "body": "x", "priority": "high"}, "priority"),
        ("create_rule", {"id": "new", "body": "x", "priority": 10**7}, "priority must be an integer between"),
        ("create_rule", {"id": "new", "body": "x", "settings": ["k"]}, "settings"),
        ("create_rule", {"id": "new", "body": "x", "imports": ["new"]}, "rule 'new' imports itself"),
        ("create_rule", {"id": "new", "body": "x", "imports": ["Not Valid"]}, "import 'Not Valid' is not a valid"),
        ("create_rule", {"id": "new", "body": "x", "tags": [""]}, "tags[0] must be a non-empty string"),
        ("create_rule", {"id": "new", "body": "x", "description": "two\nlines"}, "description must be one line"),
        ("create_rule", {"id": "new", "body": "nul\x00byte"}, "NUL"),
        ("create_rule", {"id": "new", "body": "x", "enabled": "sometimes"}, "enabled"),
        # update_rule
        ("update_rule", {"id": "a", "expected_version": 1, "body": "stale"},
         "version conflict on rule 'a': expected version 1, current version is 2"),
        ("update_rule", {"id": "a", "body": "no version"}, "expected_version"),
        ("update_rule", {"id": "a", "expected_version": "two"}, "expected_version"),
        ("update_rule", {"id": "a", "expected_version": 0}, "expected_version"),
        ("update_rule", {"id": "ghost", "expected_version": 1, "body": "x"}, "rule 'ghost' does not exist"),
        ("update_rule", {"id": "a", "expected_version": 2, "body": over}, f"body is {MAX_BODY + 1} bytes"),
        ("update_rule", {"id": "a", "expected_version": 2, "globs": ["{x"]}, "unclosed '{'"),
        ("update_rule", {"id": "a", "expected_version": 2, "activation": "auto"}, "needs at least one glob"),
        ("update_rule", {"id": "a", "expected_version": 2, "priority": 1.5}, "priority"),
        # delete_rule
        ("delete_rule", {"id": "a", "expected_version": 1}, "expected version 1, current version is 2"),
        ("delete_rule", {"id": "a"}, "expected_version"),
        ("delete_rule", {"id": "ghost", "expected_version": 1}, "rule 'ghost' does not exist"),
        ("delete_rule", {"id": ["a"], "expected_version": 2}, "id"),
        # compose_rules
        ("compose_rules", {"rule_ids": ["ghost"]}, "rule_ids names rule 'ghost', which does not exist"),
        ("compose_rules", {"rule_ids": ["Bad Id"]}, "rule_ids entry 'Bad Id' is not a valid rule id"),
        ("compose_rules", {"token_budget": 0}, "token_budget"),
        ("compose_rules", {"token_budget": "lots"}, "token_budget"),
        ("compose_rules", {"context_files": "src/a.py"}, "context_files"),
        ("compose_rules", {"agent": " "}, "agent must be a non-empty name"),
        # search_rules
        ("search_rules", {}, "query"),
        ("search_rules", {"query": ""}, "query"),
        ("search_rules", {"query": '" "'}, "search query must contain at least one word"),
        ("search_rules", {"query": "x", "limit": 1000}, "limit"),
        # rule_history
        ("rule_history", {"id": "ghost"}, "rule 'ghost' does not exist"),
        ("rule_history", {}, "id"),
        ("rule_history", {"id": "a", "limit": -1}, "limit"),
        # rollback_rule
        ("rollback_rule", {"id": "a", "to_version": 99}, "version 99 of rule 'a' does not exist"),
        ("rollback_rule", {"id": "a", "to_version": 1, "expected_version": 1}, "current version is 2"),
        ("rollback_rule", {"id": "a"}, "to_version"),
        ("rollback_rule", {"id": "ghost", "to_version": 1}, "does not exist"),
        ("rollback_rule", {"id": "gone", "to_version": 2}, "version 2 of rule 'gone' is a deletion"),
        # validate_rule (semantic problems are a valid=false result; malformed arguments are errors)
        ("validate_rule", {"id": "x"}, "body"),
        ("validate_rule", {"id": "x", "body": ["not", "text"]}, "body"),
        # import_rules
        ("import_rules", {"directory": ".."}, "is outside the allowed root"),
        ("import_rules", {"directory": "/etc"}, "is outside the allowed root"),
        ("import_rules", {"directory": "sub/../../x"}, "is outside the allowed root"),
        ("import_rules", {"directory": "escape"}, "is outside the allowed root"),
        ("import_rules", {"directory": "missing"}, "directory 'missing' does not exist under the allowed root"),
        ("import_rules", {"directory": "rules", "format": "word"}, "format"),
        ("import_rules", {}, "directory"),
        # export_rules
        ("export_rules", {"directory": "../out"}, "is outside the allowed root"),
        ("export_rules", {"directory": "escape/out"}, "is outside the allowed root"),
        ("export_rules", {"directory": "out", "format": "auto"}, "format"),
        # warm_cache
        ("warm_cache", {"limit": 0}, "limit"),
        ("warm_cache", {"limit": "many"}, "limit"),
    ]


async def bad_input_every_tool(client: Client, server: Any, calls: Any, outside: Path) -> None:
    """Every tool refuses malformed or impossible arguments with a precise isError result and changes nothing."""
    await calls.ok(client, "create_rule", {"id": "a", "body": "one\n"})
    await calls.ok(client, "update_rule", {"id": "a", "expected_version": 1, "body": "two\n"})
    await calls.ok(client, "create_rule", {"id": "cyc-a", "body": "x", "imports": ["cyc-b"]})
    await calls.ok(client, "create_rule", {"id": "cyc-b", "body": "y", "imports": ["cyc-a"]})
    await calls.ok(client, "create_rule", {"id": "gone", "body": "z"})
    await calls.ok(client, "delete_rule", {"id": "gone", "expected_version": 1})
    (server.files_root / "rules").mkdir()
    (server.files_root / "escape").symlink_to(outside, target_is_directory=True)

    covered = set()
    for tool, arguments, fragment in _bad_calls():
        covered.add(tool)
        with calls.unchanged(server.db):
            text = await calls.error(client, tool, arguments)
        assert fragment in text, f"{tool}({str(arguments)[:200]}): {fragment!r} not in {text[:500]!r}"
    assert covered >= TOOLS
    assert not list(outside.iterdir()), "an export escaped the files root"
    cycle = await calls.ok(client, "compose_rules", {"rule_ids": ["cyc-a"]})  # skipped, and said why
    assert [p["problem"] for p in cycle["problems"]] == ["import cycle: cyc-a -> cyc-b -> cyc-a"]
    # the server is still healthy and the data is intact
    assert (await calls.ok(client, "get_rule", {"id": "a"}))["version"] == 2


async def resources_and_prompt(client: Client, server: Any, calls: Any) -> None:
    await calls.ok(client, "create_rule", {"id": "r1", "body": "first body\n", "activation": "always"})
    await calls.ok(client, "update_rule", {"id": "r1", "expected_version": 1, "body": "second body\n"})
    await calls.ok(client, "create_rule", {"id": "py", "body": "python!\n", "activation": "auto",
                                           "globs": ["*.py"], "description": "Py"})

    listed = await client.list_resources()
    assert "rules://index" in {str(r.uri) for r in listed.resources}
    templates = await client.list_resource_templates()
    assert [t.uri_template for t in templates.resource_templates] == ["rules://index{?after}", "rules://{ref}"]

    index = json.loads((await client.read_resource("rules://index")).contents[0].text)
    assert [(r["id"], r["version"]) for r in index["rules"]] == [("py", 1), ("r1", 2)] and index["next"] is None
    assert all("body" not in r for r in index["rules"])

    current = (await client.read_resource("rules://r1")).contents[0]
    assert current.text == "second body\n" and current.mime_type == "text/markdown"
    assert (await client.read_resource("rules://r1@1")).contents[0].text == "first body\n"
    assert (await client.read_resource("rules://r1@2")).contents[0].text == "second body\n"

    for uri, fragment in [
        ("rules://ghost", "rule 'ghost' does not exist"),
        ("rules://r1@9", "version 9 of rule 'r1' does not exist"),
        ("rules://r1@x", "version 'x' in rules://r1@x is not a number"),
    ]:
        with calls.unchanged(server.db), pytest.raises(MCPError) as info:
            await client.read_resource(uri)
        assert fragment in str(info.value), str(info.value)
        calls.no_traceback(str(info.value))

    prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == ["compose"]
    prompt = await client.get_prompt("compose", {"context_files": "src/a.py, lib/b.ts", "token_budget": "500"})
    text = prompt.messages[0].content.text
    assert text == "<!-- rule:py@1 -->\npython!\n\n<!-- rule:r1@2 -->\nsecond body\n"
    only_named = await client.get_prompt("compose", {"rule_ids": "py", "tags": "none"})
    assert only_named.messages[0].content.text == "<!-- rule:py@1 -->\npython!\n"
    for arguments, fragment in [
        ({"token_budget": "many"}, "token_budget must be a positive integer"),
        ({"rule_ids": "ghost"}, "rule 'ghost', which does not exist"),
    ]:
        with calls.unchanged(server.db), pytest.raises(MCPError) as info:
            await client.get_prompt("compose", arguments)
        assert fragment in str(info.value), str(info.value)
        calls.no_traceback(str(info.value))
