"""The README's main job: the telemetry stack, the HTTP server with sample rules, a demo workload.

``otel-mcp demo`` installs and starts the Collector, Jaeger and Prometheus,
starts ``otel-mcp serve --transport http`` exporting OTLP to the Collector, runs
a short workload with a real MCP client that sends its trace context in
``params._meta``, and prints where to look. It then keeps serving until Ctrl-C
(or ``--duration`` seconds) and stops everything it started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Any

from otel_mcp.config import Settings
from otel_mcp.remote import RemoteError
from otel_mcp.store.backends import redact

SAMPLES = Path(__file__).parent / "samples"
SERVER_START_TIMEOUT = 30.0  # seconds
# While the demo serves, one call this often keeps Jaeger's Monitor tab (rates over the
# last minutes, from spanmetrics scraped every 5 s) showing live figures.
BACKGROUND_CALL_PERIOD = 2.0  # seconds
BACKGROUND_ERROR_EVERY = 10  # every 10th background call fails (a missing rule): the error-rate chart


def seed_samples(settings: Settings) -> int:
    """Import the bundled sample rules into an empty database; returns how many were imported."""
    from otel_mcp.interchange import import_directory
    from otel_mcp.store.backends import open_store

    store = open_store(settings.db)
    try:
        if store.count():
            return 0
        return sum(r.status == "created" for r in import_directory(store, SAMPLES, ".", "cursor"))
    finally:
        store.close()


def client_snippet(settings: Settings) -> str:
    beside_python = Path(sys.executable).with_name("otel-mcp")
    exe = str(beside_python) if beside_python.exists() else shutil.which("otel-mcp") or sys.executable
    args = ["-m", "otel_mcp.cli"] if exe == sys.executable else []
    args += ["serve", "--db", str(settings.db)]
    return json.dumps(
        {
            "mcpServers": {
                "otel-mcp": {"command": exe, "args": args},
                "otel-mcp-http": {"url": f"http://{settings.host}:{settings.port}/mcp"},
            }
        },
        indent=2,
    )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RemoteError(f"the demo's server exited with code {proc.returncode} while starting (its output is "
                              "above): if its port is taken, choose another with --port")
        with suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RemoteError(f"the demo's server did not answer {url} within {timeout:.0f}s (its output is above)")


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def start_server(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Whatever already answers on the port would otherwise pass the health check and get the demo's writes.
    if _port_taken(settings.host, settings.port):
        raise RemoteError(f"{settings.host}:{settings.port} is already in use (another otel-mcp?): "
                          "choose another port with --port")
    argv = [
        sys.executable, "-m", "otel_mcp.cli", "serve", "--transport", "http",
        "--host", settings.host, "--port", str(settings.port), "--db", str(settings.db),
        "--cache-dir", str(settings.cache_dir),
    ]
    proc = subprocess.Popen(argv, env={**os.environ, **env})
    try:
        _wait_healthy(f"http://{settings.host}:{settings.port}/healthz", proc, SERVER_START_TIMEOUT)
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise
    return proc


async def demo_workload(url: str) -> dict[str, Any]:
    """A short, realistic session: browse, compose, write with a conflict, search, history.

    Runs inside one client span, so the client's trace context reaches the
    server through ``params._meta`` and the whole session is one trace.
    """
    from mcp import Client
    from opentelemetry import trace

    tracer = trace.get_tracer("otel_mcp.demo")
    calls = 0
    with tracer.start_as_current_span("demo workload") as span:
        async with Client(url) as client:
            await client.call_tool("list_rules", {})
            for files in (["src/app.py"], ["src/ui/App.tsx", "src/ui/App.test.tsx"], ["README.md"]):
                for _ in range(5):
                    await client.call_tool("compose_rules", {"context_files": files, "token_budget": 2000})
                    calls += 1
            created = await client.call_tool(
                "create_rule",
                {"id": f"demo-{int(time.time())}", "body": "# Demo\n\nWritten by the demo.", "activation": "manual"},
            )
            rule = created.structured_content or {}
            conflict = await client.call_tool(
                "update_rule", {"id": rule.get("id", "missing"), "expected_version": 99, "body": "stale write"}
            )
            await client.call_tool("search_rules", {"query": "python"})
            await client.call_tool("rule_history", {"id": "python-style"})
            await client.read_resource("rules://index")
            calls += 6
        # A handshake-era client (protocol before 2026-07-28) still works, and has a session with an id.
        async with Client(url, mode="legacy") as legacy:
            await legacy.call_tool("compose_rules", {"context_files": ["src/app.py"]})
            calls += 1
        trace_id = format(span.get_span_context().trace_id, "032x")
    return {"calls": calls, "trace_id": trace_id, "conflict_shown": bool(conflict.is_error)}


async def background_workload(url: str, stop: threading.Event) -> int:
    """Compose every ``BACKGROUND_CALL_PERIOD`` seconds (and fail now and then) until ``stop``."""
    import anyio
    from mcp import Client

    calls = 0
    async with Client(url) as client:
        while not stop.is_set():
            calls += 1
            if calls % BACKGROUND_ERROR_EVERY == 0:
                await client.call_tool("rule_history", {"id": "no-such-rule"})
            else:
                await client.call_tool("compose_rules", {"context_files": ["src/app.py"]})
            await anyio.sleep(BACKGROUND_CALL_PERIOD)
    return calls


def _start_background_workload(url: str) -> threading.Event:
    """Run ``background_workload`` in a daemon thread; set the returned event to stop it."""
    import anyio

    stop = threading.Event()

    def run() -> None:
        # The server going away ends the demo anyway; this thread only stops quietly.
        with suppress(Exception):
            anyio.run(background_workload, url, stop)

    threading.Thread(target=run, name="demo-background-workload", daemon=True).start()
    return stop


def where_to_look(mcp_url: str, urls: dict[str, str], trace_id: str) -> dict[str, str]:
    """Every page and command the demo prints, by label."""
    from otel_mcp.stack.links import jaeger_links, prometheus_links

    links = {"MCP endpoint": mcp_url}
    if urls:
        # (a stack started by an older otel-mcp recorded only the API's URL)
        jaeger = urls.get("jaeger_ui") or urls["jaeger_api"].split("/api/", maxsplit=1)[0]
        links |= jaeger_links(jaeger, trace_id) | prometheus_links(urls["prometheus"])
    return links


def _client_tracing(endpoint: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-mcp-demo-client"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    return provider


def traced_workload(url: str, otlp_endpoint: str) -> dict[str, Any]:
    """``demo_workload`` with this process's spans exported to ``otlp_endpoint`` (gRPC)."""
    import anyio

    provider = _client_tracing(otlp_endpoint)
    try:
        result: dict[str, Any] = anyio.run(demo_workload, url)
    finally:
        provider.shutdown()
    return result


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def run_demo(settings: Settings, with_stack: bool = True, duration: float | None = None) -> int:
    import anyio

    if settings.port == 0:  # "any free port": choose it here, since every link printed below names it
        settings = dataclasses.replace(settings, port=_free_port(settings.host))
    seeded = seed_samples(settings)
    print(f"==> rules database: {redact(settings.db)} ({seeded} sample rules imported)")
    stack_env: dict[str, str] = {}
    urls: dict[str, str] = {}
    started_stack = False
    jaeger_ui: Path | None = None
    if with_stack:
        from otel_mcp import stack

        binaries = stack.install(progress=True)
        jaeger_ui = binaries.jaeger_ui
        started_stack = not stack.status().running  # a stack the user started is left running
        urls = stack.up(binaries=binaries, progress=True).urls
        otlp = "http://" + urls.get("otlp_grpc", "127.0.0.1:4317").removeprefix("http://")
        stack_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": "otel-mcp",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        }
    server = start_server(settings, stack_env)
    try:
        mcp_url = f"http://{settings.host}:{settings.port}/mcp"
        print(f"==> otel-mcp serving MCP at {mcp_url}")
        if with_stack:
            result = traced_workload(mcp_url, stack_env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        else:
            result = anyio.run(demo_workload, mcp_url)
        print(f"==> demo workload: {result['calls']} calls; optimistic-concurrency conflict shown: "
              f"{result['conflict_shown']}")
        print("==> where to look:")
        for label, link in where_to_look(mcp_url, urls, result["trace_id"]).items():
            print(f"  {label:<20} {link}")
        print(f"  {'live figures':<20} otel-mcp stats --url http://{settings.host}:{settings.port}")
        if with_stack:
            print(f"  {'traces in a terminal':<20} otel-mcp traces; otel-mcp traces show {result['trace_id']}")
            if jaeger_ui is None:
                from otel_mcp.stack.jaeger_ui import HOW_TO_GET

                print(f"  (no Jaeger UI was built, so its pages show a placeholder; {HOW_TO_GET})")
        print("==> add this to your MCP client's configuration:")
        print(client_snippet(settings))
        until = "press Ctrl-C to stop" if duration is None else f"stopping in {duration:g} s"
        print(f"==> serving, with a light workload (one call every {BACKGROUND_CALL_PERIOD:g} s) for "
              f"the Monitor tab; {until}", flush=True)
        stop = _start_background_workload(mcp_url)
        deadline = None if duration is None else time.monotonic() + duration
        while server.poll() is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
        stop.set()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        if started_stack:
            from otel_mcp import stack

            stack.down()
            print("==> stack stopped")
    return 0


if __name__ == "__main__":  # python -m otel_mcp.demo URL OTLP_ENDPOINT: the traced workload alone, as JSON
    print(json.dumps(traced_workload(sys.argv[1], sys.argv[2])))
