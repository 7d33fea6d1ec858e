"""Failed exports count their items as dropped, for every signal; a success ends the outage."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_mcp.telemetry.dropped import (
    EXPORT_FAILED,
    CountingLogExporter,
    CountingMetricExporter,
    CountingSpanExporter,
    DropCounts,
)


class Scripted:
    """An exporter that answers from a script: a result, or an exception to raise."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def export(self, *_: Any, **__: Any) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def force_flush(self, *_: Any) -> bool:
        return True

    def shutdown(self, *_: Any, **__: Any) -> None:
        pass


def test_spans_and_log_records_of_failed_exports_are_counted() -> None:
    counts = DropCounts()
    spans = CountingSpanExporter(Scripted(SpanExportResult.FAILURE, RuntimeError("down"), SpanExportResult.SUCCESS),
                                 counts)
    assert spans.export([object(), object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert spans.export([object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert counts.failing()
    assert spans.export([object()]) is SpanExportResult.SUCCESS  # type: ignore[list-item]
    assert not counts.failing()
    logs = CountingLogExporter(Scripted(RuntimeError("down")), counts)
    assert logs.export([object()] * 4) == LogRecordExportResult.FAILURE
    assert counts.snapshot() == {"traces": {EXPORT_FAILED: 3}, "logs": {EXPORT_FAILED: 4}}


def test_metric_points_of_a_failed_export_are_counted() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    counter = MeterProvider(metric_readers=[reader]).get_meter("t").create_counter("c")
    counter.add(1, {"a": "1"})
    counter.add(1, {"a": "2"})
    data = reader.get_metrics_data()
    assert isinstance(data, MetricsData)
    counts = DropCounts()
    exporter = CountingMetricExporter(Scripted(MetricExportResult.FAILURE, MetricExportResult.SUCCESS), counts)
    assert exporter.export(data) is MetricExportResult.FAILURE
    assert counts.snapshot() == {"metrics": {EXPORT_FAILED: 2}}
    assert exporter.export(data) is MetricExportResult.SUCCESS and not counts.failing()


def test_the_counting_batch_processor_queues_sampled_spans_only() -> None:
    """Its ``on_end`` queues as ``BatchSpanProcessor.on_end`` does: a recorded but unsampled span is not exported."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    from otel_mcp.telemetry.dropped import CountingBatchSpanProcessor

    class RecordOnlyFor(Sampler):
        def should_sample(self, context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_ONLY if name == "unsampled" else Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "RecordOnlyFor"

    exporter = InMemorySpanExporter()
    processor = CountingBatchSpanProcessor(CountingSpanExporter(exporter))
    provider = TracerProvider(sampler=RecordOnlyFor())
    provider.add_span_processor(processor)
    for name in ("sampled", "unsampled", "sampled too"):
        provider.get_tracer("t").start_span(name).end()
    processor.force_flush()
    assert [span.name for span in exporter.get_finished_spans()] == ["sampled", "sampled too"]
    provider.shutdown()
