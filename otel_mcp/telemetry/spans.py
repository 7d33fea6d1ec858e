"""The SDK's ``TracerProvider``, making a cheaper span.

Why: a server span of ours (11 attributes) costs ~70 us with the SDK, as much
as the rest of a cached ``compose_rules`` call's telemetry together. Half of it
is ``BoundedAttributes`` cleaning values that are plain strings and numbers
(a recursive type walk and a lock per value); a tenth is the ``ReadableSpan``
copy made at ``end()`` although an ended span is already read-only.

``LeanTracerProvider`` is the SDK's provider (sampler, id generator, span
limits, processors, resource, ``OTEL_*`` variables, shutdown: all the SDK's);
its tracers make ``LeanSpan``, the SDK's ``Span`` with these changes:

- attributes are a ``LeanAttributes``: a ``BoundedAttributes`` that stores
  ``str`` (within the length limit), ``bool``, ``int`` and ``float`` values as
  they are, and sends every other value through the SDK's cleaning; limits,
  the drop count and key order are the SDK's;
- ``end()`` hands the span itself to the processors (it is a ``ReadableSpan``,
  and read-only once ended: the SDK's own setters refuse to change it);
- the event and link lists are made on the first event or link (most spans
  have neither), and ``start_as_current_span`` is one object, not two nested
  generator-based context managers;
- a root span under the SDK's default sampler (``parentbased_always_on``, or
  ``always_on``) is sampled without the sampler's five calls: its answer is
  known (any other sampler, or a parent, is asked as the SDK asks it);
- with one span processor (ours: the batch processor) the span calls it
  directly rather than through the provider's multi-processor loop (a
  processor added later sees the spans started after it, not those in flight),
  and not at all for the hooks whose body does nothing (the batch
  processor's ``on_start`` and ``_on_ending``); with the SDK's internal
  span metrics off (its default) no per-span metrics callback is made.

Everything else (events, links, status, exceptions, sampling) is the SDK's
code. Making a span costs 43 k instructions over the no-op tracer's where the
SDK's costs 195 k (callgrind, docs/performance.md); ``otel_mcp.loadtest.span_cost_bench``
compares them on every run. The output is the SDK's: ``tests/telemetry/test_spans.py``
exports both side by side and compares, and checks that a ``LeanSpan`` has
every field an SDK span has (an SDK upgrade adding one fails there first).
``OTEL_MCP_LEAN_SPANS=false`` makes the SDK's own spans.
"""

from __future__ import annotations

import dis
import logging
import threading
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span, Tracer, TracerProvider
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

logger = logging.getLogger("opentelemetry.sdk.trace")

_UNSET = Status(StatusCode.UNSET)
_NONE: BoundedList[Any] = BoundedList(0)  # the events and links of a span that has none (shared, never appended to)
_SAMPLED = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace_api.TraceFlags(trace_api.TraceFlags.DEFAULT)
# One lock for every span's attributes: only the SDK's cleaning path (a value that is not a plain str, bool, int
# or float) takes it, for a moment; a lock of each span's own cost ~0.5 k instructions to make and free.
_ATTRIBUTES_LOCK = threading.Lock()


def _does_nothing(method: Any) -> bool:
    """Whether ``method``'s body is ``pass`` (a docstring at most): its bytecode only returns None."""
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    if code is None:
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in ("RESUME", "NOP")]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


class _Route:
    """Where a tracer's spans go: the one processor called directly (or the provider's multi-processor), and
    its ``on_start`` and ``_on_ending`` hooks, None where they do nothing (the batch processor's, and
    ``SpanProcessor``'s): worked out once per set of processors, not per span."""

    __slots__ = ("ending", "processor", "processors", "start")

    def __init__(self, multi: Any) -> None:
        self.processors: tuple[Any, ...] = getattr(multi, "_span_processors", ())
        processor = self.processors[0] if len(self.processors) == 1 else multi
        self.processor = processor
        self.start = None if _does_nothing(processor.on_start) else processor.on_start
        self.ending = None if _does_nothing(processor._on_ending) else processor._on_ending


class LeanAttributes(BoundedAttributes):
    """``BoundedAttributes`` that keeps simple values as they are; the rest go through the SDK's cleaning.

    Mutated under the owning span's lock (``Span.set_attribute(s)``), as the SDK's span does.
    """

    def __init__(self, maxlen: int | None, attributes: types.Attributes, max_value_len: int | None) -> None:
        self._dict: dict[str, types.AnyValue] = {}
        self.maxlen = maxlen
        self.dropped = 0
        self.max_value_len = max_value_len
        self._lock = _ATTRIBUTES_LOCK
        self._immutable = False
        if attributes:
            self._set_items(attributes)

    def __setitem__(self, key: str, value: types.AnyValue) -> None:
        self._set_items({key: value})

    def _set_items(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._immutable:
            self._raise_if_immutable()
        stored = self._dict
        limit = self.max_value_len
        room = self.maxlen
        for key, value in attributes.items():
            kind = type(value)
            if ((kind is str and (limit is None or len(value) <= limit))  # type: ignore[arg-type]
                    or kind is int or kind is bool or kind is float) and type(key) is str and key:
                if key in stored:
                    del stored[key]  # a key set again moves to the end, as in the SDK
                    stored[key] = value
                    continue
                if room is None or len(stored) < room:
                    stored[key] = value
                    continue
            BoundedAttributes.__setitem__(self, key, value)  # cleaning, or full: the SDK drops the oldest


class LeanSpan(Span):
    """The SDK's span, built without its per-value attribute cleaning and ended without a copy."""

    def __init__(  # pylint: disable=super-init-not-called
        self,
        name: str,
        context: trace_api.SpanContext,
        parent: trace_api.SpanContext | None,
        sampler: Any,
        resource: Any,
        attributes: types.Attributes,
        span_processor: Any,
        kind: trace_api.SpanKind,
        links: Sequence[trace_api.Link],
        instrumentation_info: Any,
        record_exception: bool,
        set_status_on_exception: bool,
        limits: Any,
        instrumentation_scope: Any,
        record_end_metrics: Any,
        on_ending: Any,
    ) -> None:
        # ReadableSpan's fields, then Span's (the field test keeps this list complete)
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = instrumentation_info
        self._instrumentation_scope = instrumentation_scope
        self._parent = parent
        self._start_time: int | None = None
        self._end_time: int | None = None
        self._resource = resource
        self._status = _UNSET
        self._sampler = sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._attributes: LeanAttributes = LeanAttributes(limits.max_span_attributes, attributes,
                                                          limits.max_span_attribute_length)
        self._events = _NONE  # a list of its own on the first event (most spans have none)
        self._links = self._new_links(links) if links else _NONE
        self._record_end_metrics = record_end_metrics
        self._on_ending_hook = on_ending  # the processor's _on_ending, or None where it does nothing (_Route)

    def get_span_context(self) -> trace_api.SpanContext:
        # The SDK's, without its ``typing.cast`` (a Python call per read).
        return self._context  # type: ignore[return-value]

    def _add_event(self, event: Any) -> None:
        if self._events is _NONE and self._end_time is None:
            self._events = BoundedList(self._limits.max_events)
        super()._add_event(event)

    def _add_link(self, link: trace_api.Link) -> None:
        if self._links is _NONE and self._end_time is None:
            self._links = BoundedList(self._limits.max_links)
        super()._add_link(link)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._start_time is None:
                raise RuntimeError("Calling end() on a not started span.")
            if self._end_time is not None:
                logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            self._attributes._immutable = True
        if self._record_end_metrics:
            self._record_end_metrics()
        if self._on_ending_hook is not None:
            self._on_ending_hook(self)
        self._span_processor.on_end(self)  # ended, hence read-only: no ReadableSpan copy


class CurrentSpan:
    """``start_as_current_span``'s context manager: ``use_span(..., end_on_exit=True)`` as one object.

    The SDK's is two nested generator-based context managers; this does the same in ``__enter__`` and
    ``__exit__``. Used as a decorator it is the SDK's own.
    """

    __slots__ = ("_args", "_end_on_exit", "_span", "_token", "_tracer")

    def __init__(self, tracer: LeanTracer, end_on_exit: bool, args: tuple[Any, ...]) -> None:
        self._tracer = tracer
        self._end_on_exit = end_on_exit
        self._args = args
        self._span: trace_api.Span | None = None
        self._token: object = None

    span_class: type[LeanSpan] = LeanSpan  # what the tracer makes (a subclass: ``mcp._LeanServerSpanContext``)

    def __enter__(self) -> trace_api.Span:
        span = self._span = self._tracer.start_span(*self._args, span_class=self.span_class)
        self._token = context_api.attach(context_api.set_value(_SPAN_KEY, span))
        return span

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        span = self._span
        assert span is not None
        try:
            context_api.detach(self._token)  # type: ignore[arg-type]
            if isinstance(exc, Exception) and span.is_recording():  # as use_span: not GeneratorExit & co
                _, _, _, _, _, _, record_exception, set_status_on_exception = self._args
                if record_exception:
                    span.record_exception(exc)
                if set_status_on_exception:
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if self._end_on_exit:
                span.end()

    def __call__(self, function: Any) -> Any:
        name, context, kind, attributes, links, start_time, record_exception, status = self._args
        return Tracer.start_as_current_span(self._tracer, name, context, kind, attributes, links, start_time,
                                            record_exception, status, self._end_on_exit)(function)


class LeanTracer(Tracer):
    """The SDK's tracer, making ``LeanSpan``; its sampling and id logic is the SDK's ``start_span``'s."""

    _lean_route: _Route | None = None  # set on the instance by its first span

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> CurrentSpan:
        return CurrentSpan(self, end_on_exit, (name, context, kind, attributes, links, start_time, record_exception,
                                               set_status_on_exception))

    def start_span(  # pylint: disable=too-many-locals
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        *,
        span_class: type[LeanSpan] = LeanSpan,
    ) -> trace_api.Span:
        """The SDK's ``start_span``; ``span_class``: the ``LeanSpan`` subclass to make (a class given at birth:
        changing an instance's class later makes CPython turn its attributes into a dict, ~6 k instructions)."""
        links = links or ()
        parent: trace_api.SpanContext | None = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, trace_api.SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        if not self._is_enabled():
            return trace_api.NonRecordingSpan(context=parent)  # type: ignore[arg-type]  # as the SDK does
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self.id_generator.generate_trace_id()
            random_trace_id = self.id_generator.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        sampler = self.sampler
        if parent is None and (sampler is ALWAYS_ON or (type(sampler) is ParentBased and sampler._root is ALWAYS_ON)):
            # a root span under the SDK's default sampler: its answer, known without asking (no parent, so no
            # parent trace state; the span's own attributes)
            decision, span_attributes, trace_state = Decision.RECORD_AND_SAMPLE, attributes, None
        else:
            sampling = sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision, span_attributes, trace_state = sampling.decision, sampling.attributes, sampling.trace_state
        flags = _SAMPLED if decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED
        if random_trace_id:
            flags = trace_api.TraceFlags(flags | trace_api.TraceFlags.RANDOM_TRACE_ID)
        span_context = trace_api.SpanContext(trace_id, self.id_generator.generate_span_id(), is_remote=False,
                                             trace_flags=flags, trace_state=trace_state)
        tracer_metrics = self._tracer_metrics
        record_end_metrics = (None if type(tracer_metrics) is NoOpTracerMetrics  # its start_span returns a no-op
                              else tracer_metrics.start_span(parent, decision))
        if decision is Decision.DROP:
            return trace_api.NonRecordingSpan(context=span_context)
        route = self._lean_route
        if route is None or route.processors is not getattr(self.span_processor, "_span_processors", ()):
            route = self._lean_route = _Route(self.span_processor)  # first span, or a processor was added
        span = span_class(name, span_context, parent, sampler, self.resource, span_attributes,
                          route.processor, kind, links, self.instrumentation_info, record_exception,
                          set_status_on_exception, self._span_limits, self._instrumentation_scope, record_end_metrics,
                          route.ending)
        # Span.start(), minus the lock: a span no other thread has seen yet
        span._start_time = start_time if start_time is not None else time_ns()
        if route.start is not None:
            route.start(span, parent_context=context)
        return span


class LeanTracerProvider(TracerProvider):
    """The SDK's ``TracerProvider`` whose tracers make ``LeanSpan``."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if type(tracer) is Tracer:  # a no-op tracer (disabled provider) stays as it is
            tracer.__class__ = LeanTracer
        return tracer
