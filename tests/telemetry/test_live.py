"""Real server subprocesses: ``opentelemetry-instrument``, SDK disabled vs enabled, ``/metrics``, ``otel-mcp stats``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from otel_mcp.store.backends import open_store

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds: a bound on the wait, not a performance assertion
NO_EXPORT = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
RULES = [
    {"id": "py-style", "body": "Use type hints.", "activation": "auto", "globs": ["**/*.py"], "priority": 2},
    {"id": "base", "body": "Be kind.", "activation": "always"},
    {"id": "ts", "body": "Prefer const.", "activation": "auto", "globs": ["**/*.ts"], "imports": ["base"]},
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(db: Path | str) -> Path | str:
    store = open_store(db)
    try:
        for rule in RULES:
            store.create(rule)
    finally:
        store.close()
    return db


class Live:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("content-type", ""), exc.read().decode()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.log.read_text(errors="replace")


@contextmanager
def live_server(tmp: Path, db: Path | str, env: Mapping[str, str], prefix: tuple[str, ...] = (),
                name: str = "server") -> Iterator[Live]:
    port = _free_port()
    log = tmp / f"{name}.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "COVERAGE"))}
    base.update(OTEL_MCP_STATE_DIR=str(tmp / f"state-{name}"), OTEL_MCP_CACHE_DIR=str(tmp / f"cache-{name}"),
                PYTHONUNBUFFERED="1", **env)
    args = [*prefix, sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http", "--host", "127.0.0.1",
            "--port", str(port), "--db", str(db), "--files-root", str(tmp)]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=base,
                                   cwd=REPO_ROOT)
    server = Live(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited {process.returncode}:\n{log.read_text(errors='replace')}")
            try:
                if server.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects (the console exporter's pretty-printed spans) among other output lines."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = end


async def _calls(url: str) -> list[Any]:
    """A fixed workload; the results as plain data (text of each content block, isError, resource text)."""
    out: list[Any] = []
    async with Client(url) as client:
        for name, args in (("list_rules", {}), ("get_rule", {"id": "py-style"}),
                           ("compose_rules", {"context_files": ["src/a.py", "web/b.ts"]}),
                           ("compose_rules", {"context_files": ["src/a.py", "web/b.ts"]}),
                           ("search_rules", {"query": "hints"}), ("get_rule", {"id": "missing"})):
            result = await client.call_tool(name, args)
            out.append([name, result.is_error, [getattr(c, "text", None) for c in result.content]])
        resource = await client.read_resource("rules://py-style")
        out.append([getattr(c, "text", None) for c in resource.contents])
        out.append(sorted(t.name for t in (await client.list_tools()).tools))
    return out


async def test_opentelemetry_instrument_no_double_provider_no_duplicate_spans(tmp_path: Path) -> None:
    instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if instrument is None:
        pytest.skip("opentelemetry-instrument is not installed")
    db = _seed(tmp_path / "rules.db")
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_SERVICE_NAME": "otel-mcp-instrumented", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with live_server(tmp_path, db, env, prefix=(instrument,), name="instrumented") as server:
        await _calls(server.url)
        output = server.stop()
    spans = [o for o in _json_objects(output) if "context" in o and "kind" in o]
    server_spans = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    assert server_spans, output[-3000:]
    keys = [(s["context"]["trace_id"], s["attributes"].get("jsonrpc.request.id"), s["name"]) for s in server_spans]
    assert len(keys) == len(set(keys)), "a request got more than one SERVER span"
    calls = [s for s in server_spans if s["name"].startswith("tools/call")]
    assert len(calls) == 6  # one per tools/call, no more
    # One provider: every span carries the distro-configured resource, ours enriched the SDK span.
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"otel-mcp-instrumented"}
    assert len({json.dumps(s["resource"], sort_keys=True) for s in spans}) == 1  # a single TracerProvider
    assert all(s["attributes"].get("network.transport") == "tcp" for s in calls)
    assert len({s["context"]["span_id"] for s in spans}) == len(spans), "a span exported twice"
    assert "Overriding of current TracerProvider is not allowed" not in output
    assert "Overriding of current MeterProvider is not allowed" not in output
    assert "Traceback" not in output


async def test_sdk_disabled_and_enabled_give_identical_results(tmp_path: Path) -> None:
    db = _seed(tmp_path / "rules.db")
    results = {}
    for name, env in (("disabled", {"OTEL_SDK_DISABLED": "true"}),
                      ("enabled", {**NO_EXPORT, "OTEL_SDK_DISABLED": "false"})):
        copy = tmp_path / f"{name}.db"
        shutil.copy(db, copy)
        with live_server(tmp_path, copy, env, name=name) as server:
            results[name] = await _calls(server.url)
    assert results["disabled"] == results["enabled"]
    assert results["enabled"][5][1] is True  # the failing call failed in both


async def test_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    db = _seed(tmp_path / "rules.db")
    with live_server(tmp_path, db, {**NO_EXPORT, "OTEL_MCP_METRICS_ENDPOINT": "true"}) as server:
        async with Client(server.url) as client:
            await client.call_tool("list_rules", {})
        status, content_type, body = server.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# TYPE mcp_server_operation_duration_seconds histogram" in body
    assert 'mcp_server_operation_duration_seconds_count{' in body
    assert 'mcp_method_name="tools/call"' in body


async def test_stats_cli_against_a_live_server(tmp_path: Path, handshake_version: Any) -> None:
    db = _seed(tmp_path / "rules.db")
    negotiated = "2025-06-18"
    with live_server(tmp_path, db, NO_EXPORT) as server:
        await _calls(server.url)  # a 2026-07-28 client (sessionless)
        with handshake_version(negotiated):  # and one that connects with initialize, offering an older version
            async with Client(server.url, mode="legacy") as handshake:
                await handshake.call_tool("list_rules", {})
                assert handshake.protocol_version == negotiated
        text = subprocess.run([sys.executable, "-m", "otel_mcp.cli", "stats", "--url", server.url],
                              check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        as_json = subprocess.run([sys.executable, "-m", "otel_mcp.cli", "stats", "--url", server.url, "--json"],
                                 check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert text.returncode == 0, text.stderr
    assert "telemetry on (SDK fast paths: " in text.stdout and "tools/call" in text.stdout
    assert "cache:" in text.stdout and "process: RSS" in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    stats = json.loads(as_json.stdout)
    assert any(key.startswith("tools/call") for key in stats["methods"])
    # the versions the two clients negotiated, each with its requests (the handshake one: initialize, list_rules)
    assert set(stats["protocols"]) == {"2026-07-28", negotiated}, stats["protocols"]
    assert stats["protocols"]["2026-07-28"]["count"] >= 7 and stats["protocols"][negotiated]["count"] >= 2
    protocol_rows = [line.split() for line in text.stdout.splitlines() if line.startswith(("protocol", "20"))]
    assert protocol_rows[0][:2] == ["protocol", "version"]
    assert {row[0] for row in protocol_rows[1:]} == {"2026-07-28", negotiated}
    assert stats["telemetry"]["fastpath"] in ("on", "off")
