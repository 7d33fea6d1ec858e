"""Every rule the server accepts, and every composition, reaches the official client on both transports.

The official SDK client refuses a server-sent event over 1 MiB, so over streamable HTTP a result that
carries its payload twice (text and structured content, the text JSON-escaped again) broke long before
the stored data did. These tests read the largest accepted rule, the whole real corpus composed with no
budget, and pages of rules whose settings are as large as accepted, through ``mcp.Client`` against the
real server process (stdio and HTTP), and check the refusals that keep every result within
``max_result_bytes``.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from otel_mcp.config import Settings
from otel_mcp.store import RuleStore
from otel_mcp.store.model import MAX_DESCRIPTION_CHARS, MAX_LIST_ITEMS, MAX_TAG_CHARS, RuleLimits

pytestmark = pytest.mark.anyio


def markdown_of(size: int) -> str:
    """Realistic rule text (headings, code, quotes) of exactly ``size`` UTF-8 bytes."""
    unit = '## Style\n\nUse "type hints" and `ruff`; prefer pathlib.\n\n```python\nx: int = 1\n```\n\n- é ✓\n'
    text = unit * (size // len(unit.encode()) + 1)
    while len(text.encode()) > size:
        text = text[:-1]
    return text + "a" * (size - len(text.encode()))


def settings_of(size: int) -> dict[str, Any]:
    """A settings object whose compact JSON is exactly ``size`` bytes."""
    settings = {"notes": ""}
    settings["notes"] = "n" * (size - len(json.dumps(settings, separators=(",", ":"))))
    return settings


def max_size_rule(rule_id: str) -> dict[str, Any]:
    """A rule at every field's limit (body and settings at their defaults)."""
    return {
        "id": rule_id,
        "body": markdown_of(Settings.max_body_bytes),
        "description": "d" * MAX_DESCRIPTION_CHARS,
        "activation": "auto",
        "globs": [f"src/**/*.{i:03}" for i in range(MAX_LIST_ITEMS)],
        "tags": [f"{i:02}" + "t" * (MAX_TAG_CHARS - 2) for i in range(MAX_LIST_ITEMS)],
        "settings": settings_of(Settings.max_settings_bytes),
    }


def connections(server: Any) -> list[Callable[[], Client]]:
    """The official client, as each kind of client connects: over HTTP with the initialize handshake (answers
    come as server-sent events, where the client's 1 MiB event limit applies) and with the 2026-07-28 protocol."""
    if server.http is None:
        return [server.client]
    return [lambda: server.http.client(mode="legacy"), server.http.client]


async def all_pages(calls: Any, client: Client, **args: Any) -> list[dict[str, Any]]:
    listed, cursor = [], None
    while True:
        page = await calls.ok(client, "list_rules", {**args, **({"cursor": cursor} if cursor else {})})
        listed += page["rules"]
        cursor = page["next_cursor"]
        if cursor is None:
            return listed


async def index_pages(client: Client) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = []
    uri: str | None = "rules://index"
    while uri is not None:
        page = json.loads((await client.read_resource(uri)).contents[0].text)
        listed += page["rules"]
        uri = page["next"]
    return listed


async def test_the_whole_corpus_composed_with_no_budget(mcp_server: Any, calls: Any, corpus_dir: Path) -> None:
    shutil.copytree(corpus_dir, mcp_server.files_root / "corpus")
    async with mcp_server.client() as client:
        imported = await calls.ok(client, "import_rules", {"directory": "corpus"})
        assert imported["counts"] == {"created": len(list(corpus_dir.glob("*.mdc")))}
    for connect in connections(mcp_server):
        async with connect() as client:
            for path in ("src/app.py", "web/App.tsx", "README.md"):
                markdown, manifest = await calls.document(client, "compose_rules", {"context_files": [path]})
                included = manifest["included"]
                assert len(included) > 200, f"{path}: only {len(included)} rules"
                assert [m[0] for m in re.findall(r"<!-- rule:([a-z0-9._-]+)@(\d+)", markdown)] == [
                    i["id"] for i in included
                ]


async def test_a_max_size_rule_reads_back(mcp_server: Any, calls: Any) -> None:
    rule = max_size_rule("biggest")
    async with mcp_server.client() as client:
        created = await calls.ok(client, "create_rule", rule)
        assert created["body_bytes"] == Settings.max_body_bytes
    for connect in connections(mcp_server):
        async with connect() as client:
            body, metadata = await calls.document(client, "get_rule", {"id": "biggest"})
            assert body == rule["body"] and "body" not in metadata
            assert {k: metadata[k] for k in ("description", "globs", "tags", "settings")} == {
                k: rule[k] for k in ("description", "globs", "tags", "settings")
            }
            assert (await client.read_resource("rules://biggest")).contents[0].text == rule["body"]
            assert [r["id"] for r in await all_pages(calls, client)] == ["biggest"]
            composed, manifest = await calls.document(client, "compose_rules", {"rule_ids": ["biggest"]})
            assert rule["body"] in composed and manifest["included"][0]["id"] == "biggest"


async def test_list_rules_after_max_size_settings(mcp_server: Any, calls: Any) -> None:
    heavy = settings_of(Settings.max_settings_bytes)
    ids = [f"heavy-{i:02}" for i in range(24)]
    async with mcp_server.client() as client:
        for rule_id in ids:
            await calls.ok(client, "create_rule", {"id": rule_id, "body": "b", "settings": heavy})
    for connect in connections(mcp_server):
        async with connect() as client:
            listed = await all_pages(calls, client, limit=200)
            assert [r["id"] for r in listed] == ids and all(r["settings"] == heavy for r in listed)
            first = await calls.ok(client, "list_rules", {"limit": 200})
            assert 1 <= len(first["rules"]) < len(ids), "a page is cut to fit, not sent whole"
            assert [r["id"] for r in await index_pages(client)] == ids
            history = await calls.ok(client, "rule_history", {"id": "heavy-00"})
            assert history["versions"][0]["rule"]["settings"] == heavy


async def test_sizes_beyond_the_limits_are_refused_by_name(mcp_server: Any, calls: Any) -> None:
    async with mcp_server.client() as client:
        with calls.unchanged(mcp_server.db):
            text = await calls.error(client, "create_rule", {
                "id": "s", "body": "b", "settings": settings_of(Settings.max_settings_bytes + 1)})
            assert f"{Settings.max_settings_bytes + 1} bytes" in text and "max_settings_bytes" in text
            text = await calls.error(client, "create_rule", {"id": "t", "body": "b", "tags": ["t" * 65]})
            assert "tags[0] has 65 characters" in text
            text = await calls.error(client, "create_rule", {"id": "g", "body": "b", "globs": ["*.py"] * 65})
            assert "globs has 65 items" in text
            # Each quote doubles when encoded: the body is within max_body_bytes but could not be read back.
            text = await calls.error(client, "create_rule", {"id": "q", "body": '"' * Settings.max_body_bytes})
            assert "when read back" in text and "max_result_bytes" in text


async def test_a_result_over_max_result_bytes_names_its_size(
    http_server_factory: Callable[..., Any], calls: Any
) -> None:
    server = http_server_factory(env={"OTEL_MCP_MAX_RESULT_BYTES": str(64 * 1024)})
    async with server.client(mode="legacy") as client:
        for i in range(3):
            await calls.ok(client, "create_rule", {"id": f"r{i}", "body": markdown_of(30_000),
                                                   "activation": "auto", "globs": ["**/*.md"]})
        text = await calls.error(client, "compose_rules", {"context_files": ["README.md"]})
        with pytest.raises(MCPError, match=r"the result is \d+ bytes; the limit is 65536 bytes"):
            await client.get_prompt("compose", {"context_files": "README.md"})
        assert re.search(r"the result is \d+ bytes; the limit is 65536 bytes \(max_result_bytes\)", text), text
        assert "token_budget" in text
        _, manifest = await calls.document(client, "compose_rules", {"context_files": ["README.md"],
                                                                             "token_budget": 10_000})
        assert manifest["dropped"]
        body, _ = await calls.document(client, "get_rule", {"id": "r0"})
        assert len(body.encode()) == 30_000
        assert "\nTraceback" not in server.output()


async def test_stored_rules_over_new_limits_stay_readable_and_are_named_once(
    http_server_factory: Callable[..., Any], db_path: Path, calls: Any
) -> None:
    loose = RuleStore(db_path, RuleLimits(max_settings_bytes=2**30, max_body_bytes=2**30))
    loose.create({"id": "legacy-big", "body": "old", "settings": settings_of(Settings.max_settings_bytes + 10)})
    loose.create({"id": "legacy-tags", "body": "old"})
    loose.create({"id": "fine", "body": "new"})
    loose.close()
    with sqlite3.connect(db_path) as conn:  # as a version that allowed 256 tags wrote it
        conn.execute("UPDATE rules SET tags = ? WHERE id = 'legacy-tags'",
                     (json.dumps([f"t{i}" for i in range(MAX_LIST_ITEMS + 1)]),))
    server = http_server_factory()
    async with server.client(mode="legacy") as client:
        _, meta = await calls.document(client, "get_rule", {"id": "legacy-big"})
        assert len(json.dumps(meta["settings"], separators=(",", ":"))) == Settings.max_settings_bytes + 10
        assert [r["id"] for r in await all_pages(calls, client)] == ["fine", "legacy-big", "legacy-tags"]
    warnings = [line for line in server.output().splitlines() if "break the current limits" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], server.output()
    assert "2 stored rule(s)" in warnings[0] and "legacy-big: settings are" in warnings[0]
    assert "legacy-tags: tags has 65 items" in warnings[0] and "fine:" not in warnings[0]
