"""Types of the C extension ``_wire.c`` (otlp_wire's C half)."""

from typing import Any

def span_field(span: Any, /) -> bytes | None: ...
def span_fields(spans: Any, /) -> tuple[Any, Any, bytes] | None: ...
def log_record_field(
    timestamp: int | None,
    observed: int | None,
    severity: int | None,
    severity_text: str | None,
    body: Any,
    attrs: Any,
    dropped: int,
    flags: int,
    trace_id: int | None,
    span_id: int | None,
    event_name: str | None,
    /,
) -> bytes | None: ...
def request_line(
    second_text: str, millis: str, before: str, duration_ms: float, after: str, trace_id: int | None,
    span_id: int | None, /,
) -> str: ...
def log_record(
    timestamp: int | None,
    observed: int | None,
    severity: int | None,
    severity_text: str | None,
    body: Any,
    attrs: Any,
    dropped: int,
    flags: int,
    trace_id: int | None,
    span_id: int | None,
    event_name: str | None,
    /,
) -> bytes | None: ...
