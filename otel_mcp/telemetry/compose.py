"""Rule-composition instrumentation: one span per composition, a child span per engine step.

Each composition the engine runs (no cache, or a cache miss) gets an
``otel_mcp.compose`` span (counts of rules included/dropped/stubbed,
conflicts, output bytes and token estimate, the store generation; never a
rule body or id), each engine step (``engine.STEPS``) a child span
``otel_mcp.compose.<step>`` and a record in ``otel_mcp.compose.duration{step}``;
``otel_mcp.compose.rules{outcome}`` counts the rules of each composition.
Each broken rule a composition skips (its manifest's ``problems``) adds an
``otel_mcp.compose.problem`` event to the span and one to
``otel_mcp.compose.problems{error.type}``, ``error.type`` being the problem's kind.

A cache hit composes nothing: it creates no span and records no metric; it
only marks the enclosing span (the MCP server span) with
``otel_mcp.compose.cache_hit=true`` (without a tracer provider that records,
the service is not wrapped at all: there is no span to mark). That keeps the common request at one
span (the SDK's), which is what the overhead budget allows (see
``docs/performance.md``); cache hit/miss counts come from the cache's
counters (``otel_mcp.cache.requests``).

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
from collections.abc import Callable, Collection
from typing import Any, Final

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import get_meter
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind, StatusCode

from otel_mcp.compose import engine, service
from otel_mcp.telemetry import names
from otel_mcp.telemetry.bound import bind
from otel_mcp.telemetry.package import _otel_mcp_instruments
from otel_mcp.telemetry.state import current_span, instrumentation_enabled, records_spans
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)
SCHEMA_URL: Final = Schemas.V1_37_0.value

# Set by the service wrapper for the engine wrapper: [service instance, composed?].
_composing: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("otel_mcp_composing", default=None)
_CACHE_HIT: Final = {names.COMPOSE_CACHE_HIT: True}


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
        problems_counter = meter.create_counter(
            names.COMPOSE_PROBLEMS, unit="{rule}", description="Broken rules a composition skipped, by kind"
        )
        problem_attrs = {kind: {ERROR_TYPE: kind} for kind in engine.PROBLEM_KINDS}
        step_attrs = {step: {names.STEP: step} for step in engine.STEPS}
        step_durations = {step: bind(step_duration, attrs) for step, attrs in step_attrs.items()}
        step_span_names = {step: names.SPAN_COMPOSE_STEP_PREFIX + step for step in engine.STEPS}
        rules_by_outcome = {o: bind(rules_histogram, {names.OUTCOME: o})
                            for o in ("selected", "included", "dropped", "stubbed")}

        def engine_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
            state = _composing.get()
            if state is not None:
                state[1] = True
            if not instrumentation_enabled():
                return wrapped(*args, **kw)
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
                try:
                    if span.is_recording():
                        _describe(span, state[0] if state is not None else None, args, composition)
                    included = composition.included
                    rules_by_outcome["included"].record(len(included))
                    rules_by_outcome["dropped"].record(len(composition.dropped))
                    rules_by_outcome["stubbed"].record(sum(1 for i in included if i.get("stubbed")))
                    for problem in composition.problems:
                        attrs = problem_attrs.get(problem["kind"], {ERROR_TYPE: names.OTHER})
                        problems_counter.add(1, attrs)
                        if span.is_recording():
                            span.add_event(names.EVENT_COMPOSE_PROBLEM, attrs)
                except Exception:
                    logger.debug("compose telemetry failed", exc_info=True)
                return composition

        def make_step_wrapper(step: str) -> Any:
            attrs = step_attrs[step]
            bound = step_durations[step]
            span_name = step_span_names[step]

            def step_wrapper(wrapped: Any, instance: Any, args: Any, kw: Any) -> Any:
                if not instrumentation_enabled():
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
                        bound.record(time.perf_counter() - start)
                        raise
                    bound.record(time.perf_counter() - start)
                    if step == "select":
                        selected = len(args[2].selected) if len(args) > 2 else 0
                        rules_by_outcome["selected"].record(selected)
                        if span.is_recording():
                            span.set_attribute(names.COMPOSE_RULES_SELECTED, selected)
                    return result

            return step_wrapper

        if records_spans(kwargs.get("tracer_provider")):  # the mark needs a span: else no wrapper at all
            service.ComposeService.compose = _marking_cache_hits(  # type: ignore[assignment,method-assign]
                service.ComposeService.compose)
        # The service calls the engine through its own module global ``compose``.
        wrapt.wrap_function_wrapper(service, "compose", engine_wrapper)
        for step in engine.STEPS:
            wrapt.wrap_function_wrapper(engine, step, make_step_wrapper(step))

    def _uninstrument(self, **kwargs: Any) -> None:
        original = getattr(service.ComposeService.compose, "__wrapped__", None)
        if original is not None:
            service.ComposeService.compose = original  # type: ignore[method-assign]
        unwrap(service, "compose")
        for step in engine.STEPS:
            unwrap(engine, step)


def _marking_cache_hits(compose: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``ComposeService.compose`` marking the enclosing span when the cache served the composition.

    A plain function in the class, not a ``wrapt`` wrapper: it runs on every cached composition, where a
    wrapper's binding and call would cost more than the mark itself."""

    def compose_marking_cache_hits(self: Any, request: Any) -> Any:
        state: list[Any] = [self, False]
        token = _composing.set(state)
        try:
            composition = compose(self, request)
        finally:
            _composing.reset(token)
        if not state[1]:  # served from the cache: no span of its own, a mark on the enclosing one
            span = current_span()
            if span.is_recording():
                span.set_attributes(_CACHE_HIT)
        return composition

    compose_marking_cache_hits.__wrapped__ = compose  # type: ignore[attr-defined]
    return compose_marking_cache_hits


def _describe(span: Any, service_instance: Any, args: Any, composition: Any) -> None:
    """Counts only: never a rule body or id. ``args`` are the engine's: ``(rules, request, options)``."""
    request = args[1] if len(args) > 1 else None
    included = composition.included
    attrs: dict[str, Any] = {
        names.COMPOSE_CACHE_HIT: False,
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
    ruleset = getattr(service_instance, "_ruleset", None)
    if ruleset is not None:
        attrs[names.COMPOSE_GENERATION] = ruleset.generation
    span.set_attributes(attrs)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())
