"""Every limit, configured small through its ``OTEL_MCP_*`` variable, hit over a real client.

One HTTP server per module (the limits do not interfere with each other): tool-level limits through
``mcp.Client`` (an ``isError`` result naming the setting, nothing stored), wire-level limits through raw
HTTP (status code plus a JSON-RPC error body naming the setting). Each test also checks that just under
the limit is accepted, so a limit that is off by one or not applied at all fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client
from relwire import HttpProc, RawHttp, assert_no_traceback, is_jsonrpc_error

pytestmark = pytest.mark.anyio

LIMITS = {
    "OTEL_MCP_MAX_BODY_BYTES": "200",
    "OTEL_MCP_MAX_IMPORTS": "2",
    "OTEL_MCP_MAX_IMPORT_DEPTH": "2",
    "OTEL_MCP_MAX_RULES": "4",
    "OTEL_MCP_MAX_REQUEST_BYTES": "8192",
    "OTEL_MCP_MAX_SESSIONS": "3",
    "OTEL_MCP_GLOB_MAX_CHARS": "20",
    "OTEL_MCP_GLOB_MAX_WILDCARDS": "3",
    "OTEL_MCP_GLOB_MAX_SEGMENTS": "3",
    "OTEL_MCP_GLOB_MAX_ALTERNATIVES": "2",
}


@pytest.fixture(scope="module")
def limited(module_http: Callable[..., HttpProc]) -> HttpProc:
    return module_http(env=LIMITS)


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def refused(client: Client, tool: str, args: dict[str, Any], *needles: str) -> str:
    result = await client.call_tool(tool, args)
    text = text_of(result)
    assert result.is_error, f"{tool} should have been refused: {text[:300]}"
    assert_no_traceback(text)
    for needle in needles:
        assert needle in text, text
    return text


async def accepted(client: Client, tool: str, args: dict[str, Any]) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    return result.structured_content


async def test_max_body_bytes(limited: HttpProc) -> None:
    async with Client(f"http://127.0.0.1:{limited.port}/mcp") as client:
        await accepted(client, "create_rule", {"id": "body-ok", "body": "b" * 200})
        await refused(client, "create_rule", {"id": "body-big", "body": "b" * 201},
                      "201 bytes", "the limit is 200", "max_body_bytes")
        await refused(client, "update_rule", {"id": "body-ok", "body": "é" * 101, "expected_version": 1},
                      "202 bytes", "max_body_bytes")  # bytes, not characters
        got = await client.call_tool("get_rule", {"id": "body-ok"})
        assert got.structured_content["version"] == 1 and got.content[0].text == "b" * 200
        await refused(client, "get_rule", {"id": "body-big"})  # nothing stored


async def test_max_imports(limited: HttpProc) -> None:
    async with Client(f"http://127.0.0.1:{limited.port}/mcp") as client:
        for name in ("imp-a", "imp-b", "imp-c"):
            await accepted(client, "create_rule", {"id": name, "body": name})
        await accepted(client, "create_rule", {"id": "imp-two", "body": "x", "imports": ["imp-a", "imp-b"]})
        await refused(client, "create_rule", {"id": "imp-three", "body": "x", "imports": ["imp-a", "imp-b", "imp-c"]},
                      "3 imports", "the limit is 2", "max_imports")
        check = await accepted(client, "validate_rule",
                               {"id": "imp-three", "body": "x", "imports": ["imp-a", "imp-b", "imp-c"]})
        assert check["valid"] is False and "max_imports" in check["errors"][0], check


async def test_max_import_depth(limited: HttpProc) -> None:
    async with Client(f"http://127.0.0.1:{limited.port}/mcp") as client:
        # d0 -> d1 -> d2 is two import steps (the limit); d3 -> d2 -> d1 -> d0 is three.
        await accepted(client, "create_rule", {"id": "dep-0", "body": "0"})
        for i in (1, 2, 3):
            await accepted(client, "create_rule", {"id": f"dep-{i}", "body": str(i), "imports": [f"dep-{i - 1}"]})
        ok = await accepted(client, "compose_rules", {"rule_ids": ["dep-2"]})
        assert {r["id"] for r in ok["included"]} == {"dep-0", "dep-1", "dep-2"}
        deep = await accepted(client, "compose_rules", {"rule_ids": ["dep-3"]})  # skipped, not a failure
        manifest = deep.get("manifest", deep)
        assert manifest["included"] == [], manifest
        problem = manifest["problems"][0]["problem"]
        assert "dep-3 -> dep-2 -> dep-1 -> dep-0" in problem and "limit of 2 (max_import_depth)" in problem


async def test_max_rules_per_composition(limited: HttpProc) -> None:
    async with Client(f"http://127.0.0.1:{limited.port}/mcp") as client:
        for i in range(5):
            await accepted(client, "create_rule", {"id": f"many-{i}", "body": f"rule {i}", "tags": ["many"]})
        four = await accepted(client, "compose_rules", {"rule_ids": [f"many-{i}" for i in range(4)]})
        assert len(four["included"]) == 4
        await refused(client, "compose_rules", {"rule_ids": [f"many-{i}" for i in range(5)]},
                      "selects 5 rules", "the limit is 4", "max_rules")


@pytest.mark.parametrize(
    ("ok", "over", "needles"),
    [
        ("*a*b*", "*a*b*c*", ("has 4 wildcards", "the limit is 3", "glob_max_wildcards")),
        ("a/b/c", "a/b/c/d", ("has 4 segments", "the limit is 3", "glob_max_segments")),
        ("x" * 20, "x" * 21, ("glob is 21 characters", "the limit is 20", "glob_max_chars")),
        ("{a,b}.md", "{a,b,c}.md", ("more than 2 patterns", "glob_max_alternatives")),
    ],
)
async def test_glob_limits(limited: HttpProc, ok: str, over: str, needles: tuple[str, ...]) -> None:
    async with Client(f"http://127.0.0.1:{limited.port}/mcp") as client:
        rule_id = "glob-" + "".join(c for c in ok if c.isalnum())
        await accepted(client, "create_rule", {"id": rule_id, "body": "g", "activation": "auto", "globs": [ok]})
        await refused(client, "update_rule", {"id": rule_id, "expected_version": 1, "exclude_globs": [over]}, *needles)
        check = await accepted(client, "validate_rule", {"id": "v", "body": "g", "activation": "auto", "globs": [over]})
        assert check["valid"] is False and needles[-1] in check["errors"][0], check
        assert (await accepted(client, "get_rule", {"id": rule_id}))["version"] == 1  # nothing stored


def test_max_request_bytes(limited: HttpProc) -> None:
    raw = RawHttp(limited.port)
    raw.open_session()
    padding = "p" * 7000
    small = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
             "params": {"name": "search_rules", "arguments": {"query": "x"}, "_meta": {"pad": padding}}}
    assert raw.post(small).status == 200
    big = {**small, "id": 6, "params": {**small["params"], "_meta": {"pad": padding * 2}}}
    reply = raw.post(big)
    assert reply.status == 413, reply.text
    assert len(reply.messages) == 1 and is_jsonrpc_error(reply.messages[0]), reply.text
    assert "8192 bytes (max_request_bytes)" in reply.messages[0]["error"]["message"]
    raw.close()
    again = RawHttp(limited.port)
    again.open_session()  # the server is fine afterwards
