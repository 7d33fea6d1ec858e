"""HTTP sessions cannot be exhausted: at ``max_sessions``, the session idle longest makes room.

The MCP SDK refuses a new session with ``503`` while ``max_sessions`` are open, however long they have been
abandoned (until ``session_idle_timeout_s`` ends them). Here, at the limit, the session with no request in
flight whose last request ended first is closed instead, and the new one admitted; the evicted session's
next request gets ``404``, which tells its client to initialize again (streamable HTTP transport,
"Session Management"). Only when every session has a request in flight or an open stream is the new client
refused; ``max_requests_in_flight`` and ``max_streams`` (``admission.py``) bound how many those can be.

The SDK has no hook for this, so its session manager's admission method is wrapped, through
``otel_mcp.mcp_internals`` (the pinned ``mcp`` version's private names; another version keeps the SDK's 503).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from otel_mcp import mcp_internals

log = logging.getLogger("otel_mcp.server.sessions")


def longest_idle(manager: Any) -> str | None:
    """The id of the open session with no request in flight that has been idle longest, or None."""
    best: tuple[float, str] | None = None
    for session_id, transport in mcp_internals.session_transports(manager).items():
        scope = transport.idle_scope
        if scope is None or mcp_internals.requests_in_flight(transport) or scope.cancel_called:
            continue
        idle_until = scope.deadline  # the end of its last request + the idle timeout
        if math.isfinite(idle_until) and (best is None or idle_until < best[0]):
            best = (idle_until, session_id)
    return best[1] if best is not None else None


def evict(manager: Any, session_id: str) -> None:
    """Forget the session now (its id answers 404 from here on) and end its server task."""
    transport = mcp_internals.forget_session(manager, session_id)
    if transport is not None:
        transport.idle_scope.cancel()  # the session's task ends as on an idle timeout, and terminates the transport


def evict_idle_sessions(manager: Any) -> None:
    """Make ``manager`` evict the longest-idle session when a new one would pass ``max_sessions``."""

    def admit_or_evict(admit: Any, requestor: Any) -> Any:
        transport = admit(requestor)
        if transport is None:
            victim = longest_idle(manager)
            if victim is not None:
                evict(manager, victim)
                log.debug("max_sessions (%d) reached: closed the session idle longest", manager.max_sessions)
                transport = admit(requestor)
        return transport

    mcp_internals.wrap_session_admission(manager, lambda admit: functools.partial(admit_or_evict, admit))
