"""Histograms bound to one attribute set: ``bind(histogram, attributes).record(value)``.

Our hot-path attribute sets are few and fixed (method x tool x transport x outcome, statement kinds,
composition steps), so each is made once and kept with its histogram. ``BoundHistogram.record`` is the
stock ``Histogram.record(value, attributes)``; where ``sdk_internals`` allows its fast path
(``OTEL_MCP_FASTPATH``), ``bind`` returns its subclass, which updates the SDK's aggregation directly.

Usage
-----
.. code-block:: python

    bound = bind(histogram, {"mcp.method.name": "tools/call"})
    bound.record(0.0012)
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.metrics import Histogram
from opentelemetry.util.types import AttributeValue


class BoundHistogram:
    """``histogram`` with a fixed attribute set (the stock SDK path)."""

    __slots__ = ("_attributes", "_instrument")

    def __init__(self, histogram: Histogram, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        self._instrument = histogram
        self._attributes: dict[str, AttributeValue] = dict(attributes or {})

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return self._attributes

    def record(self, value: float) -> None:
        self._instrument.record(value, self._attributes)


def bind(histogram: Histogram, attributes: Mapping[str, AttributeValue] | None = None) -> BoundHistogram:
    """A ``BoundHistogram`` (the fast path's subclass where ``sdk_internals`` allows it)."""
    from otel_mcp.telemetry import sdk_internals

    kind = sdk_internals.bound_histogram_class() or BoundHistogram
    return kind(histogram, attributes)


__all__ = ["BoundHistogram", "bind"]
