"""uvicorn, bounded: a header read deadline per request, and a shutdown that ends streams first.

- ``HeaderDeadline``: uvicorn's h11 protocol, where a request's headers must arrive within the read timeout
  of the connection opening (or of the previous response on a kept-alive connection). uvicorn has no such
  limit: a client sending a header byte now and then (slowloris) held its connection for ever. The body
  has its own deadline in ``admission.py``.
- ``BoundedServer``: on shutdown, every open stream (GET and ``subscriptions/listen``) ends at once; the
  POSTs in flight then get ``drain_seconds`` to finish (uvicorn's graceful timeout) before they are cut.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from otel_mcp.server.admission import Gate


class HeaderDeadline(H11Protocol):
    """h11 with a deadline on each request's headers (``header_timeout`` seconds, set by ``bounded_server``)."""

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self.loop.call_later(self.header_timeout, self._headers_overdue, self.cycle)

    def _headers_overdue(self, cycle_when_armed: Any) -> None:
        # A new request since arming means its headers arrived in time.
        if self.cycle is cycle_when_armed and not self.transport.is_closing():
            self.transport.close()


class BoundedServer(uvicorn.Server):
    """``uvicorn.Server`` whose shutdown ends the gate's streams before waiting for the requests in flight."""

    def __init__(self, config: uvicorn.Config, gate: Gate) -> None:
        super().__init__(config)
        self.gate = gate

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.gate.close_streams()
        await super().shutdown(sockets)


def bounded_server(app: Starlette, host: str, port: int, read_timeout: float, drain_seconds: float) -> BoundedServer:
    protocol = type("HeaderDeadlineProtocol", (HeaderDeadline,), {"header_timeout": read_timeout})
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, http=protocol,
                            timeout_graceful_shutdown=drain_seconds)  # type: ignore[arg-type]
    return BoundedServer(config, app.state.gate)
