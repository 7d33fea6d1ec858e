"""The one place that reaches private parts of the OpenTelemetry SDK: the fast paths, and their fallback.

Each fast path does what a stock SDK call does, cheaper, by touching SDK internals:

- ``FastBoundHistogram``: a record updates the SDK's explicit-bucket aggregation of the bound attribute set
  directly (queued, folded in recording order when a reader collects), instead of ``Histogram.record``'s
  attribute cleaning, hashing and lookup on every call, once per reader;
- ``context_readers``: ``is_instrumentation_enabled`` and ``get_current_span`` as one ``ContextVar`` read;
- ``batch_queue``: the batch span processor's queue, so that spans a full queue drops are counted.

Whether they are used (one INFO line at setup says which, ``announce``): ``OTEL_MCP_FASTPATH`` (setting
``fastpath``) ``off`` uses the stock SDK; ``auto`` (default) uses the fast paths only when the installed
``opentelemetry-api``/``-sdk`` match ``TESTED`` (the range CI runs the telemetry tests with, both ways) and
every private name they need is there; ``on`` skips the version check (the names are still checked). Nothing
else in otel_mcp imports a private OpenTelemetry name, and this module is imported lazily.

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry import sdk_internals

    sdk_internals.enabled()          # True: fast paths; False: the stock SDK
"""

from __future__ import annotations

import collections
import importlib
import logging
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.util.types import AttributeValue

from otel_mcp.config import ENV_PREFIX, FASTPATH_DEFAULT
from otel_mcp.telemetry.bound import BoundHistogram

logger = logging.getLogger("otel_mcp.telemetry")

FASTPATH_ENV: Final = ENV_PREFIX + "FASTPATH"
# The versions the fast paths were tested with (the pyproject pins; ``make test-latest-otel`` tries newer).
TESTED: Final[dict[str, tuple[str, str]]] = {
    "opentelemetry-api": ("1.45.0", "1.46.0"),  # >= first, < second
    "opentelemetry-sdk": ("1.45.0", "1.46.0"),
}
# (module, name): every private module-level name a fast path reads
PRIVATE_NAMES: Final[tuple[tuple[str, str], ...]] = (
    ("opentelemetry.sdk.metrics._internal.aggregation", "_ExplicitBucketHistogramAggregation"),
    ("opentelemetry.context", "_RUNTIME_CONTEXT"),
    ("opentelemetry.instrumentation.utils", "_SUPPRESS_INSTRUMENTATION_KEY"),
    ("opentelemetry.instrumentation.utils", "_SUPPRESS_INSTRUMENTATION_KEY_PLAIN"),
    ("opentelemetry.trace.propagation", "_SPAN_KEY"),
)
PENDING_LIMIT: Final = 1024  # values queued per bound histogram before they are folded on the recording thread
_INLINED_FIELDS: Final = ("_lock", "_value", "_sum", "_min", "_max", "_boundaries", "_record_min_max")
_INF = math.inf


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def _version_problem() -> str | None:
    for package, (low, high) in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            return f"{package} is not installed"
        if not _release(low) <= _release(installed) < _release(high):
            return f"{package} {installed} is outside the tested range >={low},<{high}"
    return None


def _missing_name() -> str | None:
    for module_name, name in PRIVATE_NAMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return module_name
        if not hasattr(module, name):
            return f"{module_name}.{name}"
    return None


@cache
def _decision() -> tuple[bool, str]:
    mode = (os.environ.get(FASTPATH_ENV) or FASTPATH_DEFAULT).strip().lower()
    if mode == "off":
        return False, f"stock OpenTelemetry SDK ({FASTPATH_ENV}=off)"
    missing = _missing_name()
    if missing is not None:
        return False, f"stock OpenTelemetry SDK ({missing} is gone)"
    problem = _version_problem()
    if problem is not None and mode != "on":
        return False, f"stock OpenTelemetry SDK ({problem})"
    return True, f"fast paths over the OpenTelemetry SDK ({FASTPATH_ENV}={mode}{'; ' + problem if problem else ''})"


def enabled() -> bool:
    """Whether the fast paths are used in this process (decided once)."""
    return _decision()[0]


def announce() -> None:
    """The one INFO line that says whether the fast paths or the stock SDK are used (at setup, once logging is
    configured: the decision itself may be taken at import time)."""
    logger.info("telemetry: %s", _decision()[1])


# -- bound histograms -------------------------------------------------------------------------


def bound_histogram_class() -> type[BoundHistogram] | None:
    return FastBoundHistogram if enabled() else None


class _Value:
    """The part of an SDK ``Measurement`` that ``aggregate(m, False)`` reads."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


def _exemplars_requested() -> bool:
    return os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip().lower() in ("always_on", "trace_based")


def _resolve(instrument: Any, attributes: Mapping[str, AttributeValue]) -> tuple[Any, list[Any]] | None:
    """(the consumer's reader-storage mapping, the aggregations for ``attributes``), or None."""
    consumer = getattr(instrument, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if not isinstance(storages, Mapping):
        return None
    is_enabled = getattr(instrument, "_is_enabled", None)
    if callable(is_enabled) and not is_enabled():
        return None
    aggregations: list[Any] = []
    for storage in storages.values():
        matches = getattr(storage, "_instrument_view_instrument_matches", {}).get(instrument)
        if not matches:
            return None
        for match in matches:
            keys = match._view._attribute_keys
            wanted = {k: v for k, v in attributes.items() if keys is None or k in keys}
            found = [a for a in match._attributes_aggregation.values() if getattr(a, "_attributes", None) == wanted]
            if len(found) != 1 or not callable(getattr(found[0], "aggregate", None)):
                return None
            aggregations.append(found[0])
    return storages, aggregations


class FastBoundHistogram(BoundHistogram):
    """The first ``record`` goes through the SDK (which creates the aggregations); later ones are queued and
    folded into the SDK's explicit-bucket aggregation objects (bit for bit its points), or handed to their
    ``aggregate``. Whenever the SDK is not what it expects (a no-op or proxy meter, a reader added later, an
    aggregation of another class, exemplars asked for) a record takes ``Histogram.record``."""

    __slots__ = ("_aggregations", "_consumer", "_fold_lock", "_inlined", "_pending", "_storages")

    def __init__(self, histogram: Histogram, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        super().__init__(histogram, attributes)
        self._aggregations: tuple[Any, ...] | None = None  # None: not resolved yet; (): the SDK path
        self._inlined: tuple[Any, ...] = ()  # the same, when all are explicit-bucket: values queued, folded later
        self._pending: collections.deque[float] = collections.deque()  # appended by any thread, folded locked
        self._fold_lock = threading.Lock()
        self._storages: Any = None
        self._consumer: Any = None

    def record(self, value: float) -> None:
        if self._inlined and 0.0 <= value < _INF and self._consumer._reader_storages is self._storages:
            pending = self._pending
            pending.append(value)
            if len(pending) >= PENDING_LIMIT:
                self.fold()
            return
        aggregations = self._aggregations
        if aggregations:
            if self._consumer._reader_storages is self._storages and 0.0 <= value < _INF:
                measurement = _Value(value)
                for aggregation in aggregations:
                    aggregation.aggregate(measurement, False)
                return
            if self._consumer._reader_storages is not self._storages:
                self.fold()  # what was recorded belongs to the readers it was recorded for
                self._aggregations = None  # readers changed: resolve again
                self._inlined = ()
        self._instrument.record(value, self._attributes)
        if self._aggregations is None:
            self._bind()

    def fold(self) -> None:
        """Apply the queued values to the aggregations, in recording order (their ``collect`` calls this)."""
        with self._fold_lock:
            pending = self._pending
            values = [pending.popleft() for _ in range(len(pending))]  # only this (locked) method pops
            if not values:
                return
            for aggregation in self._inlined:
                with aggregation._lock:
                    counts = aggregation._value
                    if counts is None:
                        counts = aggregation._value = aggregation._get_empty_bucket_counts()
                    boundaries = aggregation._boundaries
                    total = aggregation._sum
                    for value in values:
                        total += value
                        counts[bisect_left(boundaries, value)] += 1
                    aggregation._sum = total
                    if aggregation._record_min_max:
                        low, high = min(values), max(values)
                        if low < aggregation._min:  # noqa: PLR1730  (a compare, not a min() call)
                            aggregation._min = low
                        if high > aggregation._max:  # noqa: PLR1730
                            aggregation._max = high

    def _bind(self) -> None:
        self._aggregations = ()
        self._inlined = ()
        if _exemplars_requested():
            return
        try:
            resolved = _resolve(self._instrument, self._attributes)
        except Exception:
            logger.debug("cannot bind %r: SDK path", self._instrument, exc_info=True)
            return
        if resolved is not None:
            self._storages, aggregations = resolved
            self._consumer = self._instrument._measurement_consumer  # type: ignore[attr-defined]
            self._aggregations = tuple(aggregations)
            if all(_inlinable(a) for a in aggregations) and all(_hook_collect(a, self.fold) for a in aggregations):
                self._inlined = self._aggregations


def _hook_collect(aggregation: Any, fold: Callable[[], None]) -> bool:
    """Make ``aggregation.collect`` fold ``fold``'s queue first (an instance attribute over the class method;
    hooks of several bound histograms on one aggregation chain). False when the instance takes no attribute."""
    collect = aggregation.collect

    def collect_with_queued(*args: Any, **kwargs: Any) -> Any:
        fold()
        return collect(*args, **kwargs)

    try:
        aggregation.collect = collect_with_queued
    except (AttributeError, TypeError):
        return False
    return True


def _inlinable(aggregation: Any) -> bool:
    """Exactly the SDK's explicit-bucket aggregation, with the fields the inlined path touches."""
    from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation

    return (
        type(aggregation) is _ExplicitBucketHistogramAggregation
        and all(hasattr(aggregation, name) for name in _INLINED_FIELDS)
        and callable(getattr(aggregation, "_get_empty_bucket_counts", None))
    )


# -- context reads on the hot path --------------------------------------------------------------


def context_readers() -> tuple[Callable[[], bool], Callable[[], trace.Span]]:
    """(``is_instrumentation_enabled``, ``get_current_span``): one ``ContextVar.get`` and a dict lookup or two
    on the fast path, the SDK's own functions otherwise (or when the runtime context is not contextvars)."""
    from opentelemetry.instrumentation import utils as instrumentation_utils

    stock = (instrumentation_utils.is_instrumentation_enabled, trace.get_current_span)
    if not enabled():
        return stock
    from opentelemetry import context as otel_context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.trace import propagation

    runtime = otel_context._RUNTIME_CONTEXT
    current = getattr(runtime, "_current_context", None)
    if type(runtime) is not ContextVarsRuntimeContext or current is None:
        return stock
    key = instrumentation_utils._SUPPRESS_INSTRUMENTATION_KEY  # type: ignore[attr-defined]
    plain = instrumentation_utils._SUPPRESS_INSTRUMENTATION_KEY_PLAIN
    span_key = propagation._SPAN_KEY
    get = current.get
    invalid = trace.INVALID_SPAN

    def instrumentation_enabled() -> bool:
        values = get()
        return not (values.get(key) or values.get(plain))

    def current_span() -> trace.Span:
        span = get().get(span_key)  # what set_span_in_context stored
        return invalid if span is None else span

    return instrumentation_enabled, current_span


# -- the batch span processor's queue -----------------------------------------------------------


def batch_queue(processor: Any) -> collections.deque[Any] | None:
    """The bounded queue of a ``BatchSpanProcessor`` (to count what a full queue drops), or None."""
    if not enabled():
        return None
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return queue if isinstance(queue, collections.deque) and queue.maxlen else None


__all__ = ["FASTPATH_ENV", "TESTED", "announce", "batch_queue", "bound_histogram_class", "context_readers", "enabled"]
