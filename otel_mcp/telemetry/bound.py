"""Bound histograms: one instrument and one attribute set, recorded at the cost of a bisect.

The Python SDK's ``Histogram.record(value, attributes)`` cleans and copies the
attributes, hashes them (sorted) and looks the aggregation up again on every
call, once per metric reader: ~28 us per record on the 2-core benchmark
machine, which alone is ~1-2 % of a whole request. Our hot-path attribute sets
are few and fixed (method x tool x transport x outcome), so ``BoundHistogram``
does that work once: the first ``record`` goes through the SDK (which creates
the aggregations), later ones call the SDK's own aggregation objects directly
(``aggregate``: a lock, a bisect, sum/min/max) -- ~2 us. Exporters, Views,
temporality and collection are untouched: the points are the SDK's.

It relies on SDK internals (``_measurement_consumer``, ``_reader_storages``,
``_ViewInstrumentMatch._attributes_aggregation``); whenever they are not what
it expects (another SDK version, a no-op or proxy meter, a reader added later)
it falls back to ``Histogram.record``, so the result is always correct.
Exemplars are not sampled on the bound path unless ``OTEL_METRICS_EXEMPLAR_FILTER``
asks for them (then every record takes the SDK path).

Usage
-----
.. code-block:: python

    bound = BoundHistogram(histogram, {"mcp.method.name": "tools/call"})
    bound.record(0.0012)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Histogram
from opentelemetry.util.types import AttributeValue

logger = logging.getLogger(__name__)

_SLOW: Any = ()  # sentinel tuple: always take the SDK path


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
    enabled = getattr(instrument, "_is_enabled", None)
    if callable(enabled) and not enabled():
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


class BoundHistogram:
    """``histogram`` with a fixed attribute set; ``record(value)`` is cheap after the first call."""

    __slots__ = ("_aggregations", "_attributes", "_instrument", "_storages")

    def __init__(self, histogram: Histogram, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._instrument = histogram
        self._attributes: dict[str, AttributeValue] = dict(attributes or {})
        self._aggregations: tuple[Any, ...] | None = None  # None: not resolved yet
        self._storages: Any = None

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return self._attributes

    def record(self, value: float) -> None:
        aggregations = self._aggregations
        if aggregations:
            consumer = self._instrument._measurement_consumer  # type: ignore[attr-defined]
            if consumer._reader_storages is self._storages and value >= 0:
                measurement = _Value(value)
                for aggregation in aggregations:
                    aggregation.aggregate(measurement, False)
                return
            self._aggregations = None  # readers changed: resolve again
        self._instrument.record(value, self._attributes)
        if self._aggregations is None:
            self._bind()

    def _bind(self) -> None:
        self._aggregations = _SLOW
        if _exemplars_requested():
            return
        try:
            resolved = _resolve(self._instrument, self._attributes)
        except Exception:
            logger.debug("cannot bind %r: SDK path", self._instrument, exc_info=True)
            return
        if resolved is not None:
            self._storages, aggregations = resolved
            self._aggregations = tuple(aggregations)


__all__ = ["BoundHistogram"]
