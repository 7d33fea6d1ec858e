"""Types of the C extension ``_wire.c`` (otlp_wire's C half)."""

from typing import Any

def span_field(span: Any, /) -> bytes | None: ...
def span_fields(spans: Any, /) -> tuple[Any, Any, bytes] | None: ...
def request_record(
    ts: float, shape: tuple[str, str, str, bytes, bytes], duration_ms: float, trace_id: int | None,
    span_id: int | None, flags: int, timestamp: int | None, observed: int, severity: int, severity_text: str,
    event_name: str, /,
) -> tuple[str, bytes | None]: ...
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

log_record_field = log_record  # the same arguments; its bytes framed as a ScopeLogs.log_records field
