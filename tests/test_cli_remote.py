"""The commands that read a running server (``otel-mcp stats``, ``otel-mcp cache stats --url``), run as the real
CLI against a real ``otel-mcp serve --transport http`` process: the URLs the demo prints work, and every
connection or HTTP failure is one line saying what failed and what to try."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mcp import Client
from server_process import HttpServer, free_port

pytestmark = pytest.mark.anyio

CliRun = Callable[..., subprocess.CompletedProcess[str]]


def run_each(run_cli: CliRun, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent CLI runs side by side (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda argv: run_cli(*argv), commands))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (no traceback, no exception group)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    assert lines[0].startswith("otel-mcp: ")
    return lines[0]


def test_stats_reads_the_base_url_the_demo_prints(http_server: HttpServer, run_cli: CliRun) -> None:
    for result in run_each(run_cli, ("stats", "--url", http_server.base_url), ("stats", "--url", http_server.url)):
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("otel-mcp: up ") and "process: RSS" in result.stdout
    by_setting = run_cli("stats", "--json", env={"OTEL_MCP_PORT": str(http_server.port)})  # no --url
    assert by_setting.returncode == 0, by_setting.stderr
    assert "uptime_s" in json.loads(by_setting.stdout)


def test_connection_and_http_failures_are_one_line(http_server: HttpServer, run_cli: CliRun) -> None:
    base, nobody = http_server.base_url, f"127.0.0.1:{free_port()}"
    refused, healthz, missing, bare, tls, cache = map(one_line_error, run_each(
        run_cli, ("stats", "--url", f"http://{nobody}"), ("stats", "--url", base + "/healthz"),
        ("stats", "--url", base + "/nothing/here"), ("stats", "--url", base[len("http://"):]),
        ("stats", "--url", "https://" + base[len("http://"):]), ("cache", "stats", "--url", f"http://{nobody}")))
    assert refused == (f"otel-mcp: cannot connect to {nobody} (All connection attempts failed): "
                       "is `otel-mcp serve --transport http` running there? start it, or point --url at the server")
    assert cache == refused
    assert healthz == (f"otel-mcp: no MCP endpoint at {base}/healthz (HTTP 405): give the server's base URL "
                       f"({base}) or its /mcp endpoint")
    assert missing.startswith(f"otel-mcp: no MCP endpoint at {base}/nothing/here (HTTP 404)")
    assert bare.endswith("is not an http(s) URL: give the server's address, e.g. --url http://127.0.0.1:8000")
    assert tls.endswith("if the server speaks plain HTTP, use an http:// URL")


def test_a_token_protected_server(http_server_factory: Callable[..., HttpServer], run_cli: CliRun) -> None:
    server = http_server_factory(env={"OTEL_MCP_AUTH_TOKEN": "s3cret"})
    refused, by_flag = run_each(run_cli, ("stats", "--url", server.base_url),
                                ("stats", "--url", server.base_url, "--token", "s3cret"))
    assert one_line_error(refused) == (f"otel-mcp: {server.url} refused the request (HTTP 401): give the server's "
                                       "bearer token with --token or OTEL_MCP_AUTH_TOKEN")
    assert by_flag.returncode == 0, by_flag.stderr
    by_setting = run_cli("stats", "--url", server.base_url, env={"OTEL_MCP_AUTH_TOKEN": "s3cret"})
    assert by_setting.returncode == 0, by_setting.stderr


async def test_cache_stats_reads_the_running_servers_counters(http_server: HttpServer, run_cli: CliRun) -> None:
    async with Client(http_server.url) as client:
        for _ in range(3):
            result = await client.call_tool("compose_rules", {"context_files": ["src/app.py"]})
            assert not result.is_error
    served = run_cli("cache", "stats", "--url", http_server.base_url)
    assert served.returncode == 0, served.stderr
    figures: dict[str, Any] = json.loads(served.stdout)
    assert figures["source"].startswith(f"the server at {http_server.url}")
    assert figures["lookups"] >= 3 and figures["l1_hits"] + figures["l2_hits"] >= 2  # the composition was reused

    disk = run_cli("cache", "stats", "--cache-dir", str(http_server.db.parent / "cache"))
    assert disk.returncode == 0, disk.stderr
    described: dict[str, Any] = json.loads(disk.stdout)
    assert described["source"].startswith("the disk cache in ") and "--url" in described["source"]
    assert "l1_hits" not in described and "lookups" not in described  # this process's zeros are not shown
