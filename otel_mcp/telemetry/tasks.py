"""Task and coroutine timing: ``opentelemetry-instrumentation-asyncio``, restricted to named work.

The contrib ``AsyncioInstrumentor`` wraps ``asyncio.create_task``,
``ensure_future``, ``gather``, ``wait_for``, ``to_thread``,
``TaskGroup.create_task`` ...: it spans only the coroutines named in
``OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE`` (and functions named in
``OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE``), but it wraps
*every* coroutine that passes through and records ``asyncio.process.duration``
and ``asyncio.process.created`` for each (two SDK records per task).
``NamedAsyncioInstrumentor`` keeps its spans and metrics and drops the rest:
a coroutine, function or future that is not named (or, for futures,
``OTEL_PYTHON_ASYNCIO_FUTURE_TRACE_ENABLED`` is off) is passed through
untouched, at the cost of a set lookup. An ``asyncio`` function is wrapped
only when a variable could make it trace something: with none set (the
default) nothing is wrapped at all (a wrapped ``run_coroutine_threadsafe``
would be paid on every stdio line).

(The MCP server's own tasks are started by anyio and uvicorn with
``loop.create_task``, which no asyncio instrumentation sees; the names to
trace are for ``asyncio`` code such as ``asyncio.create_task(drain())``.)

Usage
-----
.. code-block:: python

    # OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE=warm_popular,drain
    NamedAsyncioInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)

Configuration
-------------
``OTEL_PYTHON_ASYNCIO_COROUTINE_NAMES_TO_TRACE``, ``OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE``,
``OTEL_PYTHON_ASYNCIO_FUTURE_TRACE_ENABLED`` (the contrib instrumentation's own variables).
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import futures
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor

R = TypeVar("R")


def _func_name(func: object) -> str | None:
    """The name the contrib instrumentation matches ``OTEL_PYTHON_ASYNCIO_TO_THREAD_FUNCTION_NAMES_TO_TRACE`` with."""
    name = getattr(func, "__name__", None)
    if name is None and isinstance(func, functools.partial):
        name = getattr(func.func, "__name__", None)
    return name


class NamedAsyncioInstrumentor(AsyncioInstrumentor):
    """``AsyncioInstrumentor`` that only touches the coroutines, functions and futures it is asked to trace."""

    _instance = None  # BaseInstrumentor is a per-class singleton: not the parent's instance
    _is_instrumented_by_opentelemetry = False

    def _traces_coroutines(self) -> bool:
        return bool(self._coros_name_to_trace) or bool(self._future_active_enabled)

    def instrument_method_with_coroutine(self, method_name: str) -> None:
        if self._traces_coroutines():
            super().instrument_method_with_coroutine(method_name)

    def instrument_gather(self) -> None:
        if self._traces_coroutines():
            super().instrument_gather()  # type: ignore[no-untyped-call]

    def instrument_taskgroup_create_task(self) -> None:
        if self._coros_name_to_trace:  # it traces coroutines only
            super().instrument_taskgroup_create_task()

    def instrument_to_thread(self) -> None:
        if self._to_thread_name_to_trace:
            super().instrument_to_thread()

    def trace_item(self, coro_or_future: Any) -> Any:
        if asyncio.iscoroutine(coro_or_future):
            return self.trace_coroutine(coro_or_future)
        if self._future_active_enabled and futures.isfuture(coro_or_future) and not isinstance(
            coro_or_future, asyncio.Task
        ):
            return self.trace_future(coro_or_future)  # type: ignore[no-untyped-call]
        return coro_or_future

    def trace_coroutine(self, coro: Any) -> Any:  # the parent's is ``async def``: this returns a coroutine
        if getattr(coro, "__name__", None) not in self._coros_name_to_trace:
            return coro
        return super().trace_coroutine(coro)  # type: ignore[no-untyped-call]

    def wrap_to_thread_func(self, func: Callable[..., R]) -> Callable[..., R]:
        if _func_name(func) not in self._to_thread_name_to_trace:
            return func
        wrapped: Callable[..., R] = super().wrap_to_thread_func(func)
        return wrapped


__all__ = ["NamedAsyncioInstrumentor"]
