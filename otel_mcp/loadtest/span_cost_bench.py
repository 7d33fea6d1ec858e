"""Where a traced request's telemetry cost goes, per span and per log record.

``python -m otel_mcp.loadtest.span_cost_bench``

Side by side in one process, interleaved rounds, medians:

- making a span with the SDK (start, 11 attributes like our MCP server span, end, batch processor),
  against ``telemetry.spans.LeanTracerProvider``'s span, a bare span and the no-op tracer;
- encoding it for OTLP: the SDK's protobuf encoder vs ``otel_mcp.telemetry.otlp_wire``, in 64-span
  batches as the batch processor sends them;
- the same for the per-request log record (``OTEL_MCP_PERF_LOG_EXPORT=all``): SDK emit, then encoding,
  against ``otlp_wire.DirectLogger`` (encoded at once, queued in the same batch processor);
- ``otlp_wire`` with its C half (``_wire.c``, when the install built it) against its Python encoder alone.

Writes ``perf/results/span_cost_bench.json``. Exits 1 when ``otlp_wire`` is not at least
``MIN_SPEEDUP`` times cheaper than the SDK's encoder (or the direct log record than the SDK's emit and
encoding), when its bytes differ from the SDK's, or when the lean span is not ``MIN_LEAN_SPEEDUP`` times
cheaper to make than the SDK's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from otel_mcp.loadtest import RESULTS_DIR
from otel_mcp.telemetry import otlp_wire
from otel_mcp.telemetry.spans import LeanTracerProvider

MIN_SPEEDUP = 2.0
MIN_LEAN_SPEEDUP = 1.25
BATCH = 64
SERVER_SPAN_ATTRIBUTES = {  # what our MCP server span carries on a tools/call over HTTP
    "mcp.method.name": "tools/call", "gen_ai.tool.name": "compose_rules", "gen_ai.operation.name": "execute_tool",
    "jsonrpc.request.id": "17", "mcp.protocol.version": "2025-06-18", "mcp.session.id": "5f0c8a3e9b2d4c61",
    "network.transport": "tcp", "network.protocol.name": "http", "client.address": "127.0.0.1",
    "client.port": 51234, "otel_mcp.compose.cache_hit": True,
}


def _per_item(fn: Callable[[], object], items: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / items * 1e6


def _python_only(work: Callable[[], object]) -> Callable[[], object]:
    """``work`` with otlp_wire's Python encoder only (as installed without a C compiler)."""
    def run() -> object:
        saved = otlp_wire._wire
        otlp_wire._wire = None  # type: ignore[assignment]
        try:
            return work()
        finally:
            otlp_wire._wire = saved
    return run


def _spans(n: int) -> tuple[list[Any], dict[str, Callable[[], object]]]:
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(kept, max_export_batch_size=BATCH))
    tracer = provider.get_tracer("mcp-python-sdk")
    lean_provider = LeanTracerProvider()
    lean_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), max_export_batch_size=BATCH))
    lean = lean_provider.get_tracer("mcp-python-sdk")
    noop = trace.NoOpTracerProvider().get_tracer("mcp-python-sdk")

    def make(tracer: Any, attributes: dict[str, Any] | None) -> Callable[[], object]:
        def run() -> None:
            for _ in range(n):
                with tracer.start_as_current_span("tools/call compose_rules", kind=SpanKind.SERVER,
                                                  attributes=attributes):
                    pass
        return run

    make(tracer, SERVER_SPAN_ATTRIBUTES)()
    provider.force_flush()
    spans = list(kept.get_finished_spans())[:n]
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    return spans, {
        "span_noop": make(noop, SERVER_SPAN_ATTRIBUTES),
        "span_bare": make(tracer, None),
        "span_server": make(tracer, SERVER_SPAN_ATTRIBUTES),
        "span_lean": make(lean, SERVER_SPAN_ATTRIBUTES),
        "encode_sdk": lambda: [sdk_encode_spans(b).SerializeToString() for b in batches],
        "encode_wire": lambda: [otlp_wire.encode_spans(b) for b in batches],
        "encode_wire_python": _python_only(lambda: [otlp_wire.encode_spans(b) for b in batches]),
    }


def _logs(n: int) -> tuple[list[Any], dict[str, Callable[[], object]]]:
    kept = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(kept, max_export_batch_size=512))
    logger = provider.get_logger("otel_mcp.perf")
    context = trace.set_span_in_context(NonRecordingSpan(SpanContext(0x5B8AA5A2D2C872E8321CF37308D69DF2,
                                                                     0x051581BF3CB55C13, False, TraceFlags(1))))

    direct_processor = BatchLogRecordProcessor(InMemoryLogRecordExporter(), max_export_batch_size=512)
    queue = otlp_wire.direct_queue(direct_processor)
    assert queue is not None
    direct = otlp_wire.DirectLogger(queue, provider.resource, logger._instrumentation_scope)  # type: ignore[attr-defined]
    span = trace.get_current_span(context).get_span_context()

    def emit() -> None:
        for _ in range(n):  # what PerfLog exports per request
            logger.emit(timestamp=time.time_ns(), context=context, severity_number=SeverityNumber.INFO,
                        severity_text="INFO", body="tools/call compose_rules ok in 1.234 ms",
                        attributes={"event": "request", "method": "tools/call", "duration_ms": 1.234,
                                    "outcome": "ok", "transport": "tcp", "target": "compose_rules"},
                        event_name="otel_mcp.request")

    def emit_direct() -> None:
        for _ in range(n):  # the same record, as PerfLog queues it when setup gives it a DirectLogger
            now = time.time_ns()
            direct.emit_fields((otlp_wire.log_record_field(
                now, now, SeverityNumber.INFO.value, "INFO", "tools/call compose_rules ok in 1.234 ms",
                {"event": "request", "method": "tools/call", "duration_ms": 1.234, "outcome": "ok",
                 "transport": "tcp", "target": "compose_rules"},
                0, int(span.trace_flags), span.trace_id, span.span_id, "otel_mcp.request"),))

    emit()
    provider.force_flush()
    records = list(kept.get_finished_logs())[:n]
    batches = [records[i : i + 512] for i in range(0, len(records), 512)]
    return records, {
        "log_emit": emit,
        "log_direct": emit_direct,  # encoding included
        "log_direct_python": _python_only(emit_direct),
        "log_encode_sdk": lambda: [sdk_encode_logs(b).SerializeToString() for b in batches],
        "log_encode_wire": lambda: [otlp_wire.encode_logs(b) for b in batches],
    }


def run(rounds: int, n: int) -> dict[str, Any]:
    spans, span_cases = _spans(n)
    records, log_cases = _logs(n)
    identical = (otlp_wire.encode_spans(spans) == sdk_encode_spans(spans).SerializeToString()
                 and otlp_wire.encode_logs(records) == sdk_encode_logs(records).SerializeToString())
    cases = {**span_cases, **log_cases}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        names = list(cases)
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each round
            samples[name].append(_per_item(cases[name], n))
    us = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    return {
        "us_per_item": us,
        "span_encode_speedup": round(us["encode_sdk"] / us["encode_wire"], 2),
        "log_encode_speedup": round(us["log_encode_sdk"] / us["log_encode_wire"], 2),
        "span_total_sdk_us": round(us["span_server"] + us["encode_sdk"], 2),
        "span_total_wire_us": round(us["span_server"] + us["encode_wire"], 2),
        "log_total_sdk_us": round(us["log_emit"] + us["log_encode_sdk"], 2),
        "log_total_wire_us": round(us["log_emit"] + us["log_encode_wire"], 2),
        "log_total_direct_us": us["log_direct"],
        "span_make_lean_speedup": round(us["span_server"] / us["span_lean"], 2),
        "log_direct_speedup": round((us["log_emit"] + us["log_encode_sdk"]) / us["log_direct"], 2),
        "c_encoder": otlp_wire.SPEEDUPS,  # the C half (_wire.c) built; else the two encoders below are the same
        "span_encode_c_speedup": round(us["encode_wire_python"] / us["encode_wire"], 2),
        "log_direct_c_speedup": round(us["log_direct_python"] / us["log_direct"], 2),
        "bytes_identical": identical, "rounds": rounds, "items": n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI)")
    args = parser.parse_args(argv)
    result = run(rounds=5 if args.quick else 15, n=1024 if args.quick else 4096)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "span_cost_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    for name, value in result["us_per_item"].items():
        print(f"{name:18} {value:8.2f} us")
    print(f"span encoding: otlp_wire {result['span_encode_speedup']}x cheaper than the SDK encoder; "
          f"log records {result['log_encode_speedup']}x; bytes identical: {result['bytes_identical']}")
    print(f"a traced request's span: {result['span_total_sdk_us']} -> {result['span_total_wire_us']} us "
          f"(encoding), made {result['span_make_lean_speedup']}x cheaper by the lean span; its log record: "
          f"{result['log_total_sdk_us']} -> {result['log_total_wire_us']} us (encoding) -> "
          f"{result['log_total_direct_us']} us (direct, {result['log_direct_speedup']}x)")
    print(f"C encoder {'built' if result['c_encoder'] else 'not built'}: spans {result['span_encode_c_speedup']}x, "
          f"direct log records {result['log_direct_c_speedup']}x cheaper than otlp_wire's Python")
    ok = (result["bytes_identical"] and result["span_make_lean_speedup"] >= MIN_LEAN_SPEEDUP
          and min(result["span_encode_speedup"], result["log_encode_speedup"], result["log_direct_speedup"])
          >= MIN_SPEEDUP)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
