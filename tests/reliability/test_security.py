"""Security on the HTTP transport: bearer auth, DNS-rebinding protection, loopback bind, read-only mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from relwire import HttpProc, RawHttp, assert_no_traceback, initialize_message, is_jsonrpc_error, start_http

from otel_mcp.config import Settings
from otel_mcp.server.auth import bearer_from, token_matches

TOKEN = "s3cret-T0ken-for-tests-0123456789"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- bearer auth -----------------------------------------------------------------


@pytest.fixture(scope="module")
def authed_server(module_http: Callable[..., HttpProc]) -> HttpProc:
    return module_http(env={"OTEL_MCP_AUTH_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def plain_server(module_http: Callable[..., HttpProc]) -> HttpProc:
    return module_http()


def test_mcp_refuses_a_missing_token_with_401_and_a_jsonrpc_error(authed_server: HttpProc) -> None:
    raw = RawHttp(authed_server.port)
    reply = raw.post(initialize_message(), session=False)
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer ")
    assert "error=" not in reply.headers["www-authenticate"]  # no token presented: a bare challenge (RFC 6750)
    assert len(reply.messages) == 1 and is_jsonrpc_error(reply.messages[0])
    assert "Authorization: Bearer" in reply.messages[0]["error"]["message"]


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"bearer{TOKEN}",
        "Bearer ",
        TOKEN,
    ],
)
def test_mcp_refuses_a_wrong_token(authed_server: HttpProc, header: str) -> None:
    raw = RawHttp(authed_server.port)
    reply = raw.post(initialize_message(), headers={"Authorization": header}, session=False)
    assert reply.status == 401
    assert "invalid_token" in reply.headers["www-authenticate"] or "error=" not in reply.headers["www-authenticate"]
    assert is_jsonrpc_error(reply.messages[0])
    assert TOKEN not in reply.text


def test_mcp_accepts_the_right_token_for_a_whole_session(authed_server: HttpProc) -> None:
    raw = RawHttp(authed_server.port)
    raw.open_session(headers=_auth(TOKEN))
    listed = raw.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=_auth(TOKEN))
    assert listed.status == 200
    assert any(t["name"] == "compose_rules" for t in listed.messages[-1]["result"]["tools"])
    # The same session without the token is refused: the token is checked on every request.
    again = raw.post({"jsonrpc": "2.0", "id": 3, "method": "ping"})
    assert again.status == 401


def test_scheme_is_case_insensitive(authed_server: HttpProc) -> None:
    raw = RawHttp(authed_server.port)
    reply = raw.post(initialize_message(), headers={"Authorization": f"bEaReR {TOKEN}"}, session=False)
    assert reply.status == 200


def test_healthz_and_readyz_stay_open_other_paths_are_protected(authed_server: HttpProc) -> None:
    raw = RawHttp(authed_server.port)
    assert raw.request("GET", "/healthz").status == 200
    assert raw.request("GET", "/readyz").status == 200
    # Deny by default: stats/metrics or any other endpoint (present or not) needs the token.
    for path in ("/stats", "/metrics", "/mcp", "/anything", "/healthz/../mcp", "//mcp"):
        reply = raw.request("GET", path)
        assert reply.status == 401, (path, reply.status)
        assert is_jsonrpc_error(json.loads(reply.body))
    for path in ("/stats", "/metrics"):
        assert raw.request("GET", path, headers=_auth(TOKEN)).status != 401


def test_token_from_file(module_http: Callable[..., HttpProc], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server = module_http(env={"OTEL_MCP_AUTH_TOKEN_FILE": str(token_file)})
    raw = RawHttp(server.port)
    assert raw.post(initialize_message(), session=False).status == 401
    assert raw.post(initialize_message(), headers=_auth(TOKEN), session=False).status == 200


def test_token_never_reaches_the_log(tmp_path: Path) -> None:
    server = start_http(tmp_path, env={"OTEL_MCP_AUTH_TOKEN": TOKEN})
    raw = RawHttp(server.port)
    raw.post(initialize_message(), headers={"Authorization": "Bearer not-the-token-zzz"}, session=False)
    raw.open_session(headers=_auth(TOKEN))
    assert server.stop() == 0
    log = server.output()
    assert TOKEN not in log and "not-the-token-zzz" not in log
    assert "refused" in log  # the refusal itself is visible to the operator
    assert_no_traceback(log)


def test_token_comparison_helpers() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc")
    assert not token_matches("", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("abc\udcff", "abc")  # undecodable header bytes never raise

    class H(dict[str, str]):
        pass

    assert bearer_from(H(authorization="Bearer  x ")) == "x"  # type: ignore[arg-type]
    assert bearer_from(H(authorization="Token x")) is None  # type: ignore[arg-type]
    assert bearer_from(H()) is None  # type: ignore[arg-type]


# -- DNS rebinding ----------------------------------------------------------------


def test_http_binds_loopback_by_default() -> None:
    assert Settings.load({}, env={}).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:8000"}, 421),
        ({"Host": "attacker.test"}, 421),
        ({"Host": "127.0.0.1.evil.example"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://localhost.evil.example:80"}, 403),
        ({"Origin": "https://127.0.0.1.nip.io"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://localhost:3000"}, 403),  # browsers only from allowed_origins (none by default)
    ],
)
def test_bad_host_or_origin_is_refused(plain_server: HttpProc, headers: dict[str, str], status: int) -> None:
    raw = RawHttp(plain_server.port)
    reply = raw.post(initialize_message(), headers=headers, session=False)
    assert reply.status == status, reply.text
    assert len(reply.messages) == 1 and is_jsonrpc_error(reply.messages[0]), reply.text
    assert "Host" in reply.messages[0]["error"]["message"] or "Origin" in reply.messages[0]["error"]["message"]


def test_loopback_host_without_origin_is_accepted(plain_server: HttpProc) -> None:
    raw = RawHttp(plain_server.port)
    for host in (f"localhost:{plain_server.port}", f"127.0.0.1:{plain_server.port}", f"[::1]:{plain_server.port}"):
        assert raw.post(initialize_message(), headers={"Host": host}, session=False).status == 200


# -- read-only mode -----------------------------------------------------------------

WRITE_TOOLS = {"create_rule", "update_rule", "delete_rule", "rollback_rule", "import_rules", "export_rules"}


@pytest.mark.anyio
async def test_read_only_mode_removes_write_tools_and_keeps_data(
    stdio_params: Callable[..., Any], db_path: Path, db_state: Callable[[Path], Any]
) -> None:
    from mcp import Client

    async with Client(stdio_params()) as client:
        await client.call_tool("create_rule", {"id": "kept", "body": "body", "activation": "always"})
    before = db_state(db_path)
    async with Client(stdio_params("--read-only")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert not names & WRITE_TOOLS
        assert {"list_rules", "get_rule", "compose_rules", "search_rules"} <= names
        for tool in sorted(WRITE_TOOLS):
            result = await client.call_tool(tool, {"id": "kept", "body": "x", "expected_version": 1, "directory": "."})
            assert result.is_error
            assert_no_traceback(str(result.content))
        composed = await client.call_tool("compose_rules", {})
        assert not composed.is_error and "<!-- rule:kept@1 -->\nbody" in composed.content[0].text
    assert db_state(db_path) == before


def test_read_only_env_and_http(module_http: Callable[..., HttpProc]) -> None:
    server = module_http(env={"OTEL_MCP_READ_ONLY": "true"})
    raw = RawHttp(server.port)
    raw.open_session()
    reply = raw.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    names = {t["name"] for t in reply.messages[-1]["result"]["tools"]}
    assert not names & WRITE_TOOLS
    call = raw.post(
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "create_rule",
                                                                      "arguments": {"id": "x", "body": "y"}}}
    )
    message = call.messages[-1]
    assert message.get("error") or message["result"].get("isError")
