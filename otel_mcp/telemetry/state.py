"""What the OpenTelemetry runtime allows right now, asked on hot paths by our instrumentors.

``instrumentation_enabled()``: False inside ``suppress_instrumentation()``, as
``opentelemetry.instrumentation.utils.is_instrumentation_enabled`` but cheaper.
``records_spans(provider)``: whether a tracer provider can record spans at all;
without one, a wrapper whose only job is a span is pure cost and is not installed.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace


def _context_reader() -> Any:
    """``is_instrumentation_enabled`` for the hot path: one ``ContextVar.get`` and two dict lookups instead of
    six Python calls (~5 k instructions, paid by each middleware and each statement). The SDK's own function
    when the runtime context is not the default contextvars one."""
    from opentelemetry import context as otel_context
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.instrumentation import utils as instrumentation_utils

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    current = getattr(runtime, "_current_context", None)
    key = getattr(instrumentation_utils, "_SUPPRESS_INSTRUMENTATION_KEY", None)
    plain = getattr(instrumentation_utils, "_SUPPRESS_INSTRUMENTATION_KEY_PLAIN", None)
    if type(runtime) is not ContextVarsRuntimeContext or current is None or key is None or plain is None:
        return instrumentation_utils.is_instrumentation_enabled
    get = current.get

    def instrumentation_enabled() -> bool:
        values = get()
        return not (values.get(key) or values.get(plain))

    return instrumentation_enabled


instrumentation_enabled: Any = _context_reader()
"""``opentelemetry.instrumentation.utils.is_instrumentation_enabled()``, cheaper: False inside
``suppress_instrumentation()``."""


def records_spans(provider: Any) -> bool:
    """Whether spans from ``provider`` (or the global one, when None) can record."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


__all__ = ["instrumentation_enabled", "records_spans"]
