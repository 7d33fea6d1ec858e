"""Composition-cache instrumentation: the cache's own counters as observable instruments.

``TieredCache`` keeps plain integer counters (``l1_hits``, ``l2_hits``,
``misses``, ``puts``, ``errors``). This instrumentor reads them in
observable-instrument callbacks at collection time, so a lookup costs
nothing more than it already does:

- ``otel_mcp.cache.requests{tier, result}``: L1 ``hit`` = ``l1_hits``, L1
  ``miss`` = ``l2_hits + misses``; every L1 miss is an L2 lookup, so L2
  ``hit`` = ``l2_hits`` and L2 ``miss`` = ``misses`` (the overall miss). Hit
  rates are derived in Prometheus (``prometheus/rules/cache.yaml``);
- ``otel_mcp.cache.puts``, ``otel_mcp.cache.errors``;
- ``otel_mcp.cache.bytes{tier}``, ``otel_mcp.cache.entries{tier}`` (from ``stats()``);
- ``otel_mcp.cache.evictions{tier=l1}``: counted around ``_l1_put`` (puts only happen on misses);
- ``otel_mcp.cache.compression.ratio``: uncompressed / stored bytes of each L2 value (``disk.encode``).

Caches are found by wrapping ``TieredCache.__init__`` (weakly referenced), so
instrument before the cache is built.

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry.cache import CacheInstrumentor

    CacheInstrumentor().instrument(meter_provider=mp)
    cache = TieredCache(directory)

Configuration
-------------
Standard ``OTEL_*`` variables only (``OTEL_METRIC_EXPORT_INTERVAL`` sets how often the callbacks run).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Iterable
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from opentelemetry.metrics import CallbackOptions, Observation, get_meter
from opentelemetry.semconv.schemas import Schemas

from otel_mcp.cache import core as cache_core
from otel_mcp.cache import disk as cache_disk
from otel_mcp.telemetry import names
from otel_mcp.telemetry.package import _otel_mcp_instruments
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)
SCHEMA_URL: Final = Schemas.V1_37_0.value

_L1: Final = {names.TIER: "l1"}
_L2: Final = {names.TIER: "l2"}
_REQUEST_ATTRS: Final = {
    ("l1", "hit"): {names.TIER: "l1", names.RESULT: "hit"},
    ("l1", "miss"): {names.TIER: "l1", names.RESULT: "miss"},
    ("l2", "hit"): {names.TIER: "l2", names.RESULT: "hit"},
    ("l2", "miss"): {names.TIER: "l2", names.RESULT: "miss"},
}


class CacheTelemetry:
    """Reads every live ``TieredCache``; also the source of the stats resource's hit rate."""

    def __init__(self, meter_provider: Any = None) -> None:
        meter = get_meter(__name__, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.caches: weakref.WeakSet[Any] = weakref.WeakSet()
        self.evictions = 0
        meter.create_observable_counter(
            names.CACHE_REQUESTS, [self._requests], unit="{request}", description="Composition cache lookups"
        )
        meter.create_observable_counter(names.CACHE_PUTS, [self._puts], unit="{put}", description="Cache stores")
        meter.create_observable_counter(
            names.CACHE_ERRORS, [self._errors], unit="{error}", description="Cache failures served as misses"
        )
        meter.create_observable_counter(
            names.CACHE_EVICTIONS, [self._evictions], unit="{entry}", description="Entries evicted from L1"
        )
        meter.create_observable_gauge(names.CACHE_BYTES, [self._bytes], unit="By", description="Bytes per cache tier")
        meter.create_observable_gauge(
            names.CACHE_ENTRIES, [self._entries], unit="{entry}", description="Entries per cache tier"
        )
        self.compression_ratio = meter.create_histogram(
            names.CACHE_COMPRESSION_RATIO, unit="1", description="Uncompressed / stored bytes of L2 values",
            explicit_bucket_boundaries_advisory=list(names.RATIO_BUCKETS),
        )

    def counts(self) -> dict[str, int]:
        """Summed counters of the live caches (cheap: attribute reads)."""
        total = {"l1_hits": 0, "l2_hits": 0, "misses": 0, "puts": 0, "errors": 0, "caches": 0}
        for cache in list(self.caches):
            total["caches"] += 1
            for key in ("l1_hits", "l2_hits", "misses", "puts", "errors"):
                total[key] += int(getattr(cache, key, 0))
        return total

    def _requests(self, _: CallbackOptions) -> Iterable[Observation]:
        c = self.counts()
        if not c["caches"]:
            return []
        return [
            Observation(c["l1_hits"], _REQUEST_ATTRS["l1", "hit"]),
            Observation(c["l2_hits"] + c["misses"], _REQUEST_ATTRS["l1", "miss"]),
            Observation(c["l2_hits"], _REQUEST_ATTRS["l2", "hit"]),
            Observation(c["misses"], _REQUEST_ATTRS["l2", "miss"]),
        ]

    def _puts(self, _: CallbackOptions) -> Iterable[Observation]:
        c = self.counts()
        return [Observation(c["puts"])] if c["caches"] else []

    def _errors(self, _: CallbackOptions) -> Iterable[Observation]:
        c = self.counts()
        return [Observation(c["errors"])] if c["caches"] else []

    def _evictions(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.evictions, _L1)] if len(self.caches) else []

    def _stats(self) -> list[Any]:
        out = []
        for cache in list(self.caches):
            try:
                out.append(cache.stats())
            except Exception:
                logger.debug("cache stats failed", exc_info=True)
        return out

    def _bytes(self, _: CallbackOptions) -> Iterable[Observation]:
        stats = self._stats()
        if not stats:
            return []
        return [Observation(sum(s.l1_bytes for s in stats), _L1), Observation(sum(s.l2_bytes for s in stats), _L2)]

    def _entries(self, _: CallbackOptions) -> Iterable[Observation]:
        stats = self._stats()
        if not stats:
            return []
        return [
            Observation(sum(s.l1_entries for s in stats), _L1), Observation(sum(s.l2_entries for s in stats), _L2)
        ]


class CacheInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    _telemetry: CacheTelemetry | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _otel_mcp_instruments

    @property
    def telemetry(self) -> CacheTelemetry | None:
        return CacheInstrumentor._telemetry

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = CacheTelemetry(kwargs.get("meter_provider"))
        CacheInstrumentor._telemetry = telemetry

        def init_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            result = wrapped(*args, **kw)
            telemetry.caches.add(instance)
            return result

        def l1_put_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            policy = instance._l1
            key = args[0] if args else kw.get("key")
            try:
                before = len(policy) + (0 if key in policy else 1)
            except Exception:
                return wrapped(*args, **kw)
            result = wrapped(*args, **kw)
            try:
                evicted = before - len(policy)
                if evicted > 0:
                    telemetry.evictions += evicted
            except Exception:
                logger.debug("eviction count failed", exc_info=True)
            return result

        def encode_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            packed = wrapped(*args, **kw)
            if not is_instrumentation_enabled():
                return packed
            try:
                value = args[0] if args else kw["value"]
                if len(packed) > 1:
                    telemetry.compression_ratio.record(len(value) / (len(packed) - 1))
            except Exception:
                logger.debug("compression ratio failed", exc_info=True)
            return packed

        wrapt.wrap_function_wrapper(cache_core, "TieredCache.__init__", init_wrapper)
        wrapt.wrap_function_wrapper(cache_core, "TieredCache._l1_put", l1_put_wrapper)
        wrapt.wrap_function_wrapper(cache_disk, "encode", encode_wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(cache_core.TieredCache, "__init__")
        unwrap(cache_core.TieredCache, "_l1_put")
        unwrap(cache_disk, "encode")
        CacheInstrumentor._telemetry = None

    @staticmethod
    def track(cache: Any) -> None:
        """Observe a cache built before ``instrument()``."""
        if CacheInstrumentor._telemetry is not None:
            CacheInstrumentor._telemetry.caches.add(cache)
