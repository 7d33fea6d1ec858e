"""Remote exposure is deliberate: a non-loopback bind needs a token or an explicit flag; Host and Origin
headers are accepted only for the configured public names and origins."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from relwire import REPO_ROOT, HttpProc, RawHttp, base_env, free_port, initialize_message, start_http

INSPECTOR = "http://localhost:6274"  # the MCP Inspector's web UI (docs/operations.md)


@pytest.fixture(scope="module")
def public_server(module_http: Callable[..., HttpProc]) -> HttpProc:
    return module_http("--public-hosts", "mcp.example.com, rules.internal:8443", "--allowed-origins", INSPECTOR)


def status(server: HttpProc, headers: dict[str, str]) -> int:
    return RawHttp(server.port).post(initialize_message(), headers=headers, session=False).status


def test_only_configured_origins_are_accepted(public_server: HttpProc) -> None:
    assert status(public_server, {}) == 200  # no Origin: a non-browser client
    assert status(public_server, {"Origin": INSPECTOR}) == 200
    assert status(public_server, {"Origin": f"http://127.0.0.1:{public_server.port}"}) == 200  # same origin
    # A page served on any other local port (another dev server, a malicious page on localhost) is refused.
    for origin in ("http://localhost:3000", f"http://127.0.0.1:{public_server.port + 1}", "http://localhost"):
        assert status(public_server, {"Origin": origin}) == 403, origin


def test_configured_public_host_names_are_accepted(public_server: HttpProc) -> None:
    for host in ("mcp.example.com", "mcp.example.com:443", "rules.internal:8443", f"localhost:{public_server.port}"):
        assert status(public_server, {"Host": host}) == 200, host
    for host in ("rules.internal:9000", "rules.internal", "evil.example", f"0.0.0.0:{public_server.port}"):
        assert status(public_server, {"Host": host}) == 421, host


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--port", str(free_port()),
               "--db", str(tmp_path / "rules.db"), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                          env=base_env(tmp_path), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "rules.example.com"])
def test_remote_bind_without_token_is_refused_with_the_risk(tmp_path: Path, host: str) -> None:
    result = serve(tmp_path, "--host", host)
    assert result.returncode == 2, result.stderr
    assert "without a bearer token" in result.stderr and "--allow-remote-without-auth" in result.stderr
    assert "read, change and delete every rule" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rules.db").exists()  # refused before anything was opened


def test_remote_bind_with_a_token_or_the_flag_serves(tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text("a-long-enough-test-token\n")
    cases = (("with-token", ("--auth-token-file", str(token_file))), ("flag", ("--allow-remote-without-auth",)))
    for name, extra in cases:
        server = start_http(tmp_path / name, "--host", "0.0.0.0", *extra)
        try:
            if name == "flag":
                assert status(server, {}) == 200
        finally:
            assert server.stop() == 0
        if name == "flag":
            assert "without a bearer token (allow_remote_without_auth)" in server.output()
