"""A traced MCP client for the two-tier Collector test, run as its own process (it sets the global tracer
provider): ``python tiers_workload.py OTLP_ENDPOINT PLAN_JSON URL...``.

Each trace is one client span (service ``otel-mcp-scaleout-client``) around one call to every replica, so
its spans come from four processes and reach the agent on four connections. The plan is a list of trace
kinds, sent in order with ``pause`` seconds between traces:

- ``ok``: ``list_rules``, ``compose_rules``, ``search_rules`` (one per replica, rotating), fast;
- ``error``: the last call is ``rule_history`` of a rule that does not exist (an ERROR server span);
- ``slow``: like ``ok``, with ``slow_s`` seconds of client time before the calls end.

Prints one JSON line: per trace its id, kind and wall-clock start and end, and the tool calls sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import Client
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

CLIENT_SERVICE = "otel-mcp-scaleout-client"
OK_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_rules", {}),
    ("compose_rules", {"context_files": ["src/app.py"], "token_budget": 2000}),
    ("search_rules", {"query": "python"}),
]
FAILING_CALL: tuple[str, dict[str, Any]] = ("rule_history", {"id": "no-such-rule"})


async def run(urls: list[str], plan: dict[str, Any]) -> dict[str, Any]:
    tracer = trace.get_tracer("otel_mcp.tests.scaleout")
    traces: list[dict[str, Any]] = []
    calls: Counter[str] = Counter()
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for url in urls]
        for number, kind in enumerate(plan["kinds"]):
            started = time.time()
            with tracer.start_as_current_span(f"scale-out request {kind}") as span:
                sequence = [*OK_CALLS[:-1], FAILING_CALL] if kind == "error" else OK_CALLS
                for offset, (tool, arguments) in enumerate(sequence):
                    client = clients[(number + offset) % len(clients)]
                    result = await client.call_tool(tool, arguments)
                    calls[tool] += 1
                    if result.is_error != (tool == FAILING_CALL[0]):
                        raise SystemExit(f"{tool} on {urls[(number + offset) % len(urls)]}: unexpected {result}")
                if kind == "slow":
                    await anyio.sleep(plan["slow_s"])
            traces.append({"trace_id": format(span.get_span_context().trace_id, "032x"), "kind": kind,
                           "start": started, "end": time.time()})
            await anyio.sleep(plan["pause"])
    return {"traces": traces, "calls": dict(calls)}


def main() -> None:
    endpoint, plan, urls = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    provider = TracerProvider(resource=Resource.create({"service.name": CLIENT_SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    try:
        result = anyio.run(run, urls, plan)
    finally:
        provider.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
