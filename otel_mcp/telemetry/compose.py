"""Rule-composition instrumentation: one span per composition, a child span per engine step.

``ComposeService.compose`` gets an ``otel_mcp.compose`` span (cache hit or
not, counts of rules included/dropped/stubbed, conflicts, output bytes and
token estimate; never a rule body or id). When the service has to compose
(no cache, or a miss), each engine step (``engine.STEPS``) gets a child span
``otel_mcp.compose.<step>`` and a record in ``otel_mcp.compose.duration{step}``;
``otel_mcp.compose.rules{outcome}`` counts the rules of each composition. A
cache hit runs no step and so costs one span.

The engine calls its steps through module globals, so wrapping
``otel_mcp.compose.engine.<step>`` is enough; the engine imports nothing from
OpenTelemetry.

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry.compose import ComposeInstrumentor

    ComposeInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)

Configuration
-------------
Standard ``OTEL_*`` variables only (through the providers).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Collection
from typing import Any, Final

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from opentelemetry.metrics import get_meter
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind, StatusCode

from otel_mcp.compose import engine, service
from otel_mcp.telemetry import names
from otel_mcp.telemetry.package import _otel_mcp_instruments
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)
SCHEMA_URL: Final = Schemas.V1_37_0.value

# Set by the engine wrapper so the service wrapper knows the call composed (a cache miss).
_composed: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("otel_mcp_composed", default=None)


class ComposeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _otel_mcp_instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"), schema_url=SCHEMA_URL)
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"), schema_url=SCHEMA_URL)
        step_duration = meter.create_histogram(
            names.COMPOSE_DURATION, unit="s", description="Duration of one composition step",
            explicit_bucket_boundaries_advisory=list(names.STEP_DURATION_BUCKETS),
        )
        rules_histogram = meter.create_histogram(
            names.COMPOSE_RULES, unit="{rule}", description="Rules per composition, by outcome",
            explicit_bucket_boundaries_advisory=list(names.COUNT_BUCKETS),
        )
        step_attrs = {step: {names.STEP: step} for step in engine.STEPS}
        step_span_names = {step: names.SPAN_COMPOSE_STEP_PREFIX + step for step in engine.STEPS}
        outcome_attrs = {o: {names.OUTCOME: o} for o in ("selected", "included", "dropped", "stubbed")}

        def service_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            if not is_instrumentation_enabled():
                return wrapped(*args, **kw)
            marker: list[bool] = []
            token = _composed.set(marker)
            try:
                with tracer.start_as_current_span(
                    names.SPAN_COMPOSE, kind=SpanKind.INTERNAL, record_exception=False, set_status_on_exception=False
                ) as span:
                    try:
                        composition = wrapped(*args, **kw)
                    except Exception as exc:
                        if span.is_recording():
                            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                            span.set_status(StatusCode.ERROR, type(exc).__qualname__)
                        raise
                    if span.is_recording():
                        _describe(span, instance, args, composition, bool(marker))
                    return composition
            finally:
                _composed.reset(token)

        def engine_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            marker = _composed.get()
            if marker is not None:
                marker.append(True)
            composition = wrapped(*args, **kw)
            try:
                included = len(composition.included)
                stubbed = sum(1 for i in composition.included if i.get("stubbed"))
                rules_histogram.record(included, outcome_attrs["included"])
                rules_histogram.record(len(composition.dropped), outcome_attrs["dropped"])
                rules_histogram.record(stubbed, outcome_attrs["stubbed"])
            except Exception:
                logger.debug("compose metrics failed", exc_info=True)
            return composition

        def make_step_wrapper(step: str) -> Any:
            attrs = step_attrs[step]
            span_name = step_span_names[step]

            def step_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
                if not is_instrumentation_enabled():
                    return wrapped(*args, **kw)
                start = time.perf_counter()
                with tracer.start_as_current_span(
                    span_name, kind=SpanKind.INTERNAL, attributes=attrs, record_exception=False,
                    set_status_on_exception=False,
                ) as span:
                    try:
                        result = wrapped(*args, **kw)
                    except Exception as exc:
                        if span.is_recording():
                            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                            span.set_status(StatusCode.ERROR, type(exc).__qualname__)
                        step_duration.record(time.perf_counter() - start, attrs)
                        raise
                    step_duration.record(time.perf_counter() - start, attrs)
                    if step == "select":
                        selected = len(args[2].selected) if len(args) > 2 else 0
                        rules_histogram.record(selected, outcome_attrs["selected"])
                        if span.is_recording():
                            span.set_attribute(names.COMPOSE_RULES_SELECTED, selected)
                    return result

            return step_wrapper

        wrapt.wrap_function_wrapper(service, "ComposeService.compose", service_wrapper)
        # The service calls the engine through its own module global ``compose``.
        wrapt.wrap_function_wrapper(service, "compose", engine_wrapper)
        for step in engine.STEPS:
            wrapt.wrap_function_wrapper(engine, step, make_step_wrapper(step))

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(service.ComposeService, "compose")
        unwrap(service, "compose")
        for step in engine.STEPS:
            unwrap(engine, step)


def _describe(span: Any, instance: Any, args: Any, composition: Any, composed: bool) -> None:
    """Counts only: never a rule body or id."""
    request = args[0] if args else None
    included = composition.included
    attrs: dict[str, Any] = {
        names.COMPOSE_CACHE_HIT: not composed,
        names.COMPOSE_RULES_INCLUDED: len(included),
        names.COMPOSE_RULES_DROPPED: len(composition.dropped),
        names.COMPOSE_RULES_STUBBED: sum(1 for i in included if i.get("stubbed")),
        names.COMPOSE_CONFLICTS: len(composition.conflicts),
        names.COMPOSE_OUTPUT_BYTES: _utf8_len(composition.markdown),
        names.COMPOSE_TOKEN_ESTIMATE: composition.token_estimate,
    }
    if request is not None:
        attrs[names.COMPOSE_CONTEXT_FILES] = len(request.context_files)
        if request.token_budget is not None:
            attrs[names.COMPOSE_TOKEN_BUDGET] = request.token_budget
    ruleset = getattr(instance, "_ruleset", None)
    if ruleset is not None:
        attrs[names.COMPOSE_GENERATION] = ruleset.generation
    span.set_attributes(attrs)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())
