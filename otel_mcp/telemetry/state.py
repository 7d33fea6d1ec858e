"""What the OpenTelemetry runtime allows right now, asked on hot paths by our instrumentors.

``instrumentation_enabled()``: False inside ``suppress_instrumentation()``, as
``opentelemetry.instrumentation.utils.is_instrumentation_enabled`` (cheaper on the fast path,
``sdk_internals.context_readers``).
``current_span()``: ``trace.get_current_span()``, the same way.
``records_spans(provider)``: whether a tracer provider can record spans at all;
without one, a wrapper whose only job is a span is pure cost and is not installed.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from otel_mcp.telemetry import sdk_internals

instrumentation_enabled: Any
current_span: Any
instrumentation_enabled, current_span = sdk_internals.context_readers()
"""``instrumentation_enabled()``: ``opentelemetry.instrumentation.utils.is_instrumentation_enabled()``, cheaper
(False inside ``suppress_instrumentation()``); ``current_span()``: ``opentelemetry.trace.get_current_span()``."""


def records_spans(provider: Any) -> bool:
    """Whether spans from ``provider`` (or the global one, when None) can record."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


__all__ = ["current_span", "instrumentation_enabled", "records_spans"]
