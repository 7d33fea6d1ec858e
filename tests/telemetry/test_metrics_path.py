"""The metrics path: the fast bound histograms (``sdk_internals.FastBoundHistogram``) queue their values and fold
them into the SDK's aggregations when a reader collects, giving the SDK's own points; the stock ``BoundHistogram``
is ``Histogram.record``; the stats view reads the exporter's own reader (``MetricsTap``) instead of aggregating
every record a second time."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from telemetry_support import NO_EXPORT, uninstrument_all

from otel_mcp.telemetry.bound import BoundHistogram
from otel_mcp.telemetry.sdk_internals import PENDING_LIMIT, FastBoundHistogram
from otel_mcp.telemetry.setup import TelemetryOptions, setup_telemetry
from otel_mcp.telemetry.stats import MetricsTap, StatsReader

ATTRS = {"mcp.method.name": "tools/call", "gen_ai.tool.name": "compose_rules"}
VALUES = (0.0, 0.0004, 0.003, 0.003, 0.02, 0.7, 12.0, 4000.0)


def _points(data: MetricsData | None, name: str = "h") -> list[HistogramDataPoint]:
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
        if isinstance(p, HistogramDataPoint)
    ]


def _facts(point: HistogramDataPoint) -> tuple[Any, ...]:
    return point.count, point.sum, point.min, point.max, tuple(point.bucket_counts), tuple(point.explicit_bounds)


class _Recording(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def _pair(views: Sequence[View] = (), readers: int = 1,
          temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
          ) -> tuple[list[InMemoryMetricReader], Any, Any]:
    """(readers of the bound provider, SDK-path histogram, bound histogram) with the same readers/views."""
    preferred = {SdkHistogram: temporality}
    sdk_reader = InMemoryMetricReader(preferred_temporality=preferred)
    bound_readers = [InMemoryMetricReader(preferred_temporality=preferred) for _ in range(readers)]
    sdk = MeterProvider(metric_readers=[sdk_reader], views=list(views)).get_meter("t").create_histogram("h")
    ours = MeterProvider(metric_readers=bound_readers, views=list(views)).get_meter("t").create_histogram("h")
    return [sdk_reader, *bound_readers], sdk, FastBoundHistogram(ours, ATTRS)


@pytest.mark.parametrize("readers", [1, 2])
def test_bound_records_what_the_sdk_records(readers: int) -> None:
    """Same points as ``Histogram.record`` across collections (cumulative), for each reader; negative and
    non-finite values are dropped as the SDK drops them."""
    (sdk_reader, *bound_readers), sdk, bound = _pair(readers=readers)
    for round_values in (VALUES, (), (0.5, -1.0, math.inf, 0.25)):
        for value in round_values:
            sdk.record(value, ATTRS)
            bound.record(value)
        expected = [_facts(p) for p in _points(sdk_reader.get_metrics_data())]
        for reader in bound_readers:
            assert [_facts(p) for p in _points(reader.get_metrics_data())] == expected
    assert len(bound._inlined) == readers  # the in-place path was the one taken


def _delta_facts(data: MetricsData | None) -> list[tuple[Any, ...]]:
    """A delta collection's points (none when nothing was recorded since the previous one)."""
    return [_facts(p) for p in _points(data)] if data is not None and data.resource_metrics else []


def test_bound_delta_collections_carry_what_was_recorded_before_each() -> None:
    """Delta temporality: each collection holds exactly the values recorded since the previous one, as the
    SDK's (the queue is folded when the reader collects, not later)."""
    (sdk_reader, bound_reader), sdk, bound = _pair(temporality=AggregationTemporality.DELTA)
    for round_values in (VALUES, (0.5, 0.25), (), (3.0,)):
        for value in round_values:
            sdk.record(value, ATTRS)
            bound.record(value)
        expected = _delta_facts(sdk_reader.get_metrics_data())
        assert _delta_facts(bound_reader.get_metrics_data()) == expected
        assert sum(f[0] for f in expected) == len(round_values)
    assert bound._inlined


def test_bound_queue_is_folded_at_its_limit_without_a_collection() -> None:
    (sdk_reader, bound_reader), sdk, bound = _pair()
    values = [random.Random(7).uniform(0, 3) for _ in range(PENDING_LIMIT * 3 + 5)]
    for value in values:
        sdk.record(value, ATTRS)
        bound.record(value)
        assert len(bound._pending) < PENDING_LIMIT
    assert [_facts(p) for p in _points(bound_reader.get_metrics_data())] == [
        _facts(p) for p in _points(sdk_reader.get_metrics_data())]


def test_bound_records_from_threads_during_collections_are_all_counted() -> None:
    """Four threads record while a fifth collects (delta, so a value counted twice or lost shows in the sum
    of the collections' counts)."""
    (_, bound_reader), _, bound = _pair(temporality=AggregationTemporality.DELTA)
    bound.record(0.001)  # the first record binds
    per_thread, counts = 5_000, []
    done = threading.Event()

    def record() -> None:
        for i in range(per_thread):
            bound.record(i / per_thread)

    def collect() -> None:
        while not done.is_set():
            counts.extend(f[0] for f in _delta_facts(bound_reader.get_metrics_data()))

    collector = threading.Thread(target=collect)
    collector.start()
    writers = [threading.Thread(target=record) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    done.set()
    collector.join()
    counts.extend(f[0] for f in _delta_facts(bound_reader.get_metrics_data()))
    assert sum(counts) == 1 + 4 * per_thread


def test_bound_other_aggregations_take_the_aggregate_path() -> None:
    view = View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation())
    (sdk_reader, bound_reader), sdk, bound = _pair(views=[view])
    for value in VALUES:
        sdk.record(value, ATTRS)
        bound.record(value)
    assert bound._inlined == () and bound._aggregations
    sdk_data, bound_data = sdk_reader.get_metrics_data(), bound_reader.get_metrics_data()
    assert sdk_data is not None and bound_data is not None
    sdk_point = sdk_data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    bound_point = bound_data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert (bound_point.count, bound_point.sum) == (sdk_point.count, sdk_point.sum)


def test_tap_shares_only_cumulative_explicit_bucket_readers() -> None:
    assert MetricsTap.shares(ConsoleMetricExporter(), env={})
    assert MetricsTap.shares(OTLPMetricExporter(endpoint="http://127.0.0.1:1", insecure=True), env={})
    delta = {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"}
    assert not MetricsTap.shares(ConsoleMetricExporter(), env=delta)
    exponential = {"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram"}
    assert not MetricsTap.shares(ConsoleMetricExporter(), env=exponential)


def test_tap_reads_the_exporting_reader_without_exporting() -> None:
    """A stats read collects the exporter's reader; nothing reaches the exporter, and the next periodic
    export still carries everything (cumulative)."""
    inner = _Recording()
    tap = MetricsTap()
    reader = PeriodicExportingMetricReader(tap.wrap(inner), export_interval_millis=math.inf)
    tap.reader = reader
    provider = MeterProvider(metric_readers=[reader])
    bound = BoundHistogram(provider.get_meter("t").create_histogram("h"), ATTRS)
    for value in VALUES:
        bound.record(value)
    first = _points(tap.get_metrics_data())
    bound.record(1.0)
    second = _points(tap.get_metrics_data())
    assert [p.count for p in first] == [len(VALUES)] and [p.count for p in second] == [len(VALUES) + 1]
    assert inner.exported == []
    reader.collect()  # what the periodic thread does
    assert [p.count for p in _points(inner.exported[-1])] == [len(VALUES) + 1]
    provider.shutdown()


def test_setup_uses_one_reader_when_an_exporter_allows(tmp_path: Any) -> None:
    """Console exporter (cumulative): the stats view reads its reader, no second reader; no exporter: an
    in-memory reader of its own. Either way the stats view has the request figures."""
    for kinds, tapped in (("console", True), ("none", False)):
        env = {**NO_EXPORT, "OTEL_METRICS_EXPORTER": kinds, "OTEL_METRIC_EXPORT_INTERVAL": "3600000"}
        options = TelemetryOptions.from_settings(perf_log=None)
        telemetry = setup_telemetry(None, env=env, options=options, set_global=False)
        try:
            readers = list(telemetry.meter_provider._measurement_consumer._reader_storages)
            assert isinstance(telemetry.stats_reader, MetricsTap) is tapped
            assert len(readers) == 1
            histogram = telemetry.meter_provider.get_meter("t").create_histogram("mcp.server.operation.duration")
            bound = BoundHistogram(histogram, {"mcp.method.name": "tools/call", "gen_ai.tool.name": "get_rule"})
            for value in (0.001, 0.002, 0.004):
                bound.record(value)
            methods = StatsReader(telemetry).snapshot()["methods"]
            assert methods["tools/call get_rule"]["count"] == 3
            assert 0.001 <= methods["tools/call get_rule"]["p50_ms"] / 1000 <= 0.004
        finally:
            telemetry.shutdown(timeout=2)
            uninstrument_all()
