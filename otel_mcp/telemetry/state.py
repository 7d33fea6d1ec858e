"""What the OpenTelemetry runtime allows right now, asked on hot paths by our instrumentors.

``instrumentation_enabled()``: False inside ``suppress_instrumentation()``, as
``opentelemetry.instrumentation.utils.is_instrumentation_enabled`` but cheaper.
``current_span()``: ``trace.get_current_span()``, cheaper.
``records_spans(provider)``: whether a tracer provider can record spans at all;
without one, a wrapper whose only job is a span is pure cost and is not installed.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace


def _context_readers() -> tuple[Any, Any]:
    """``is_instrumentation_enabled`` and ``get_current_span`` for the hot path: one ``ContextVar.get`` and a
    dict lookup or two instead of four to six Python calls (~5 k instructions, paid by each middleware, each
    statement and each perf-log line). The SDK's own functions when the runtime context is not the default
    contextvars one."""
    from opentelemetry import context as otel_context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.instrumentation import utils as instrumentation_utils
    from opentelemetry.trace import propagation

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    current = getattr(runtime, "_current_context", None)
    key = getattr(instrumentation_utils, "_SUPPRESS_INSTRUMENTATION_KEY", None)
    plain = getattr(instrumentation_utils, "_SUPPRESS_INSTRUMENTATION_KEY_PLAIN", None)
    span_key = getattr(propagation, "_SPAN_KEY", None)
    if type(runtime) is not ContextVarsRuntimeContext or None in (current, key, plain, span_key):
        return instrumentation_utils.is_instrumentation_enabled, trace.get_current_span
    get = current.get  # type: ignore[union-attr]
    invalid = trace.INVALID_SPAN

    def instrumentation_enabled() -> bool:
        values = get()
        return not (values.get(key) or values.get(plain))

    def current_span() -> trace.Span:
        # What ``set_span_in_context`` stored: a Span (the SDK's ABC check is left out, ~1 k instructions).
        span = get().get(span_key)
        return invalid if span is None else span

    return instrumentation_enabled, current_span


instrumentation_enabled: Any
current_span: Any
instrumentation_enabled, current_span = _context_readers()
"""``instrumentation_enabled()``: ``opentelemetry.instrumentation.utils.is_instrumentation_enabled()``, cheaper
(False inside ``suppress_instrumentation()``); ``current_span()``: ``opentelemetry.trace.get_current_span()``."""


def records_spans(provider: Any) -> bool:
    """Whether spans from ``provider`` (or the global one, when None) can record."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


__all__ = ["current_span", "instrumentation_enabled", "records_spans"]
