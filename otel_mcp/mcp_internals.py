"""The one place that reaches private parts of the MCP SDK (``mcp``): for the MCP instrumentation and the server.

The SDK opens its SERVER span in ``mcp.server._otel`` (``otel_span``, ``OpenTelemetryMiddleware``), keeps
a request's connection in ``ServerSession._connection``, the lowlevel server behind ``MCPServer`` in
``_lowlevel_server``, its HTTP sessions in the session manager's ``_server_instances`` (admitted by
``_admit_session``) and its HTTP client timeouts in ``mcp.shared._httpx_utils``; none has a public name.
Each access below is imported lazily and checked against ``TESTED_MCP`` (the exact version
``tests/telemetry/test_boundaries.py`` runs against, and pyproject's pin): with another version, or when a
name is gone, the caller does without it (no error-rule proxy on the server span, no transport attributes,
the SDK's own 503 at ``max_sessions`` instead of evicting the idlest session) and says so once at INFO.

Usage
-----
.. code-block:: python

    module = otel_module()          # mcp.server._otel, or None
    connection(ctx.session)         # the request's Connection, or None
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any, Final

logger = logging.getLogger("otel_mcp.mcp_internals")

TESTED_MCP: Final = "2.3.0"
OTEL_MODULE: Final = "mcp.server._otel"
_reported: set[str] = set()


def _report(what: str, why: str) -> None:
    if what not in _reported:
        _reported.add(what)
        logger.info("MCP SDK: %s unavailable (%s); going on without it", what, why)


def mcp_version() -> str | None:
    try:
        return version("mcp")
    except PackageNotFoundError:
        return None


def otel_module() -> Any:
    """``mcp.server._otel`` when it has ``otel_span`` and ``OpenTelemetryMiddleware`` and the SDK is the
    tested version; None otherwise."""
    installed = mcp_version()
    if installed != TESTED_MCP:
        _report("the server span's error rules", f"mcp {installed} is not the tested {TESTED_MCP}")
        return None
    try:
        module: ModuleType = importlib.import_module(OTEL_MODULE)
    except ImportError as exc:
        _report("the server span's error rules", str(exc))
        return None
    if not (callable(getattr(module, "otel_span", None)) and isinstance(getattr(module, "OpenTelemetryMiddleware",
                                                                                 None), type)):
        _report("the server span's error rules", f"{OTEL_MODULE} lacks otel_span or OpenTelemetryMiddleware")
        return None
    return module


def is_sdk_otel_middleware(middleware: Any) -> bool:
    """Whether ``middleware`` is the SDK's span middleware (ours goes right after it, inside its span)."""
    module = otel_module()
    return module is not None and isinstance(middleware, module.OpenTelemetryMiddleware)


def connection(session: Any) -> Any:
    """The request's ``Connection`` (its ``state`` and ``session_id``), or None."""
    return getattr(session, "_connection", None)


def lowlevel_server(server: Any) -> Any:
    """The lowlevel ``Server`` behind an ``MCPServer`` (or ``server`` itself)."""
    return getattr(server, "_lowlevel_server", server)


def session_transports(manager: Any) -> dict[str, Any]:
    """The HTTP session manager's open sessions (id -> transport); empty when the SDK keeps them elsewhere."""
    transports = getattr(manager, "_server_instances", None)
    return transports if isinstance(transports, dict) else {}


def requests_in_flight(transport: Any) -> int:
    """How many requests a session's transport is serving (counted as busy when unknown)."""
    return int(getattr(transport, "_requests_in_flight", 1))


def forget_session(manager: Any, session_id: str) -> Any:
    """Remove a session from the manager (its id answers 404 from here on); its transport, or None."""
    getattr(manager, "_session_owners", {}).pop(session_id, None)
    return session_transports(manager).pop(session_id, None)


def wrap_session_admission(manager: Any, wrap: Any) -> bool:
    """Replace the manager's admission of a new session by ``wrap(admit)``; False (nothing changed, said once at
    INFO) when the SDK is not the tested version or admits sessions another way."""
    admit = getattr(manager, "_admit_session", None)
    if mcp_version() != TESTED_MCP or not callable(admit) or not hasattr(manager, "_server_instances"):
        _report("evicting the idlest session at max_sessions", f"mcp {mcp_version()} admits sessions another way")
        return False
    manager._admit_session = wrap(admit)
    return True


def http_client_timeouts() -> tuple[float, float]:
    """(timeout, SSE read timeout) in seconds, as the MCP SDK's own HTTP client uses them
    (``mcp.shared._httpx_utils``; its values of ``TESTED_MCP`` when the module is not there)."""
    try:
        module = importlib.import_module("mcp.shared._httpx_utils")
        return float(module.MCP_DEFAULT_TIMEOUT), float(module.MCP_DEFAULT_SSE_READ_TIMEOUT)
    except (ImportError, AttributeError):
        return 30.0, 300.0


__all__ = ["TESTED_MCP", "connection", "forget_session", "http_client_timeouts", "is_sdk_otel_middleware",
           "lowlevel_server", "otel_module", "requests_in_flight", "session_transports", "wrap_session_admission"]
