"""Telemetry that never reached the backend: counted, logged once per outage.

The SDK drops spans silently in two places: a ``BatchSpanProcessor`` whose queue
is full (``max_queue_size``) drops the oldest, and a batch whose export fails
(Collector down, slow, refusing) is discarded after the exporter's retries. Both
are counted here by signal and reason, exposed as the observable counter
``otel_mcp.telemetry.dropped`` (``signal``, ``error.type``: ``queue_full`` or
``export_failed``) and in ``otel-mcp://stats`` (``telemetry.dropped``).

Logging: one WARNING when an outage starts (the first failed export of a
signal), one INFO when an export succeeds again, nothing in between: a dead
Collector cannot flood stderr. A full queue (load, not an outage) is logged at
most once a minute per signal.

Usage
-----
.. code-block:: python

    exporter = CountingSpanExporter(OTLPSpanExporter())
    processor = CountingBatchSpanProcessor(exporter, max_queue_size=4096)
    register_dropped_counter(meter_provider)
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from otel_mcp.telemetry import names

logger = logging.getLogger("otel_mcp.telemetry")
R = TypeVar("R")  # an export result type

QUEUE_FULL = "queue_full"
EXPORT_FAILED = "export_failed"
QUEUE_LOG_INTERVAL = 60.0  # seconds between two "queue full" lines for one signal


class DropCounts:
    """Process-wide counts of dropped telemetry items, by (signal, reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._failing: set[str] = set()  # signals whose last export failed (an outage in progress)
        self._queue_logged: dict[str, float] = {}  # signal -> when a full queue was last logged

    def add(self, signal: str, reason: str, count: int) -> None:
        if count <= 0:
            return
        now = time.monotonic()
        with self._lock:
            key = (signal, reason)
            self._counts[key] = self._counts.get(key, 0) + count
            if reason == QUEUE_FULL:  # load, not an outage: at most one line per QUEUE_LOG_INTERVAL
                first = now - self._queue_logged.get(signal, -QUEUE_LOG_INTERVAL) >= QUEUE_LOG_INTERVAL
                if first:
                    self._queue_logged[signal] = now
            else:
                first = signal not in self._failing
                self._failing.add(signal)
        if first and reason == QUEUE_FULL:
            logger.warning("telemetry queue full: %s dropped (%d so far); counted in %s, logged at most every "
                           "%.0fs", signal, self._counts[key], names.TELEMETRY_DROPPED, QUEUE_LOG_INTERVAL)
        elif first:
            logger.warning("telemetry export failing: %d %s dropped (%s); further drops are counted in %s, "
                           "not logged, until export recovers", count, signal, reason, names.TELEMETRY_DROPPED)

    def recovered(self, signal: str) -> None:
        if signal not in self._failing:  # the common case: no lock on a healthy export
            return
        with self._lock:
            if signal not in self._failing:
                return
            self._failing.discard(signal)
            total = sum(v for (s, _), v in self._counts.items() if s == signal)
        logger.info("telemetry export recovered for %s (%d dropped since start)", signal, total)

    def count_export(self, signal: str, export: Callable[[], R], success: R, failure: R, items: Callable[[], int]) -> R:
        """Run one export: a failure (or a raise) counts its ``items()`` as dropped, a success ends an outage."""
        try:
            result = export()
        except Exception:
            logger.debug("%s export raised", signal, exc_info=True)
            result = failure
        if result == success:
            self.recovered(signal)
        else:
            self.add(signal, EXPORT_FAILED, items())
        return result

    def failing(self) -> bool:
        """Whether the last export of some signal failed (an outage in progress)."""
        return bool(self._failing)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (signal, reason), value in sorted(self._counts.items()):
                out.setdefault(signal, {})[reason] = value
            return out

    def observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._counts.items())
        return [Observation(v, {names.SIGNAL: s, ERROR_TYPE: r}) for (s, r), v in items]


DROPPED = DropCounts()


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner``; spans of a failed export are counted as dropped."""

    def __init__(self, inner: SpanExporter, counts: DropCounts = DROPPED) -> None:
        self.inner = inner
        self.counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.counts.count_export("traces", lambda: self.inner.export(spans), SpanExportResult.SUCCESS,
                                        SpanExportResult.FAILURE, lambda: len(spans))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` that counts the spans its full queue drops (the SDK only logs them)."""

    live: ClassVar[weakref.WeakSet[CountingBatchSpanProcessor]] = weakref.WeakSet()  # for ``queued_spans`` at exit

    def __init__(self, exporter: SpanExporter, *args: Any, counts: DropCounts = DROPPED, **kwargs: Any) -> None:
        super().__init__(exporter, *args, **kwargs)
        self._drop_counts = counts
        from otel_mcp.telemetry import sdk_internals

        self._queue = sdk_internals.batch_queue(self)  # None on the stock SDK: full-queue drops go uncounted
        CountingBatchSpanProcessor.live.add(self)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        sampled = span.context is not None and span.context.trace_flags.sampled
        if queue is not None and sampled and len(queue) >= (queue.maxlen or 0):
            self._drop_counts.add("traces", QUEUE_FULL, 1)
        super().on_end(span)


def queued_spans() -> int | None:
    """Spans still waiting in the batch queues, read behind the fast-path boundary (None: not readable)."""
    total = 0
    for processor in list(CountingBatchSpanProcessor.live):
        if processor._queue is None:
            return None
        total += len(processor._queue)
    return total


class CountingLogExporter(LogRecordExporter):
    """Delegates to a log record exporter; records of a failed export are counted as dropped."""

    def __init__(self, inner: Any, counts: DropCounts = DROPPED) -> None:
        self.inner = inner
        self.counts = counts

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        return self.counts.count_export("logs", lambda: self.inner.export(batch), LogRecordExportResult.SUCCESS,
                                        LogRecordExportResult.FAILURE, lambda: len(batch))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if callable(flush) else True


class DelegatingMetricExporter(MetricExporter):
    """A metric exporter wrapped around ``inner``: its temporality and aggregation, its flush and shutdown.

    Subclasses decide what ``export`` does with the data (count failures, keep a stats read's copy).
    """

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class CountingMetricExporter(DelegatingMetricExporter):
    """Delegates to a metric exporter; data points of a failed export are counted as dropped."""

    def __init__(self, inner: MetricExporter, counts: DropCounts = DROPPED) -> None:
        super().__init__(inner)
        self.counts = counts

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        def points() -> int:
            return sum(len(m.data.data_points) for rm in metrics_data.resource_metrics
                       for sm in rm.scope_metrics for m in sm.metrics)

        return self.counts.count_export(
            "metrics", lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult.SUCCESS, MetricExportResult.FAILURE, points)


def register_dropped_counter(meter_provider: Any, counts: DropCounts = DROPPED) -> None:
    meter = meter_provider.get_meter("otel_mcp.telemetry")
    meter.create_observable_counter(names.TELEMETRY_DROPPED, [counts.observe], unit="{item}",
                                    description="Telemetry items dropped before reaching the backend")
