"""Optional bearer-token auth for the HTTP transport.

A pure ASGI middleware in front of the whole HTTP app: every path needs
``Authorization: Bearer <token>`` except the probes in ``OPEN_PATHS``
(``/healthz`` and ``/readyz``, which a load balancer or an orchestrator calls
without credentials). Deny by default: ``/mcp`` and every endpoint added later
(stats, metrics) are protected without having to be listed here.

The token comes from the ``auth_token`` setting (``OTEL_MCP_AUTH_TOKEN``) or the
first line of ``auth_token_file``. Both sides are hashed before the
constant-time comparison (``hmac.compare_digest``), so neither the content nor
the length of the token leaks through timing. The token is never logged.

A refused request gets ``401`` with ``WWW-Authenticate: Bearer`` (RFC 6750) and
a JSON-RPC-shaped error body, so an MCP client reports it like any other error.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from otel_mcp.config import Settings
from otel_mcp.errors import ConfigError
from otel_mcp.throttle import Throttle, held_back

log = logging.getLogger("otel_mcp.server.auth")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
UNAUTHORIZED = -32001  # JSON-RPC server-defined error code used for a refused credential
REALM = "otel-mcp"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (a name other than localhost counts as not)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve HTTP beyond loopback without a token, unless ``allow_remote_without_auth`` says so."""
    if settings.transport != "http" or is_loopback(settings.host) or settings.bearer_token():
        return
    if settings.allow_remote_without_auth:
        log.warning("serving %s without a bearer token (allow_remote_without_auth): anyone who can reach this "
                    "address can read and change every rule", settings.host)
        return
    raise ConfigError(
        f"refusing to serve http on {settings.host}, which is reachable from other machines, without a bearer "
        "token: anyone who can reach it could read, change and delete every rule. Set a token (--auth-token-file "
        "or OTEL_MCP_AUTH_TOKEN), bind 127.0.0.1, or, if the network is trusted (a private network behind "
        "your own authenticating proxy), pass --allow-remote-without-auth"
    )


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if presented is None:
        # Still do the work, so a missing token takes as long as a wrong one.
        hmac.compare_digest(_digest(b""), _digest(expected.encode()))
        return False
    return hmac.compare_digest(_digest(presented.encode("utf-8", "surrogateescape")), _digest(expected.encode()))


def bearer_from(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized_body(message: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": UNAUTHORIZED, "message": message}}, separators=(",", ":")
    ).encode()


class BearerAuthMiddleware:
    """Refuse every HTTP request without the right bearer token, except on ``open_paths``.

    :param app: the ASGI app to protect
    :param token: the expected token (non-empty)
    :param open_paths: exact paths served without a token (default ``/healthz``, ``/readyz``)
    """

    def __init__(self, app: ASGIApp, token: str, open_paths: Iterable[str] = OPEN_PATHS) -> None:
        if not token:
            raise ValueError("BearerAuthMiddleware needs a non-empty token")
        self.app = app
        self._token = token
        self.open_paths = frozenset(open_paths)
        self.refused = 0  # requests refused since start (for stats and tests)
        self._throttle = Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path", "") in self.open_paths:
            await self.app(scope, receive, send)
            return
        presented = bearer_from(Headers(scope=scope))
        if token_matches(presented, self._token):
            await self.app(scope, receive, send)
            return
        self.refused += 1
        if presented is None:
            message = "Unauthorized: this server requires 'Authorization: Bearer <token>'"
            challenge = f'Bearer realm="{REALM}"'
        else:
            message = "Unauthorized: the bearer token is not valid"
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        # Never log the presented token: only that requests were refused, at most once a minute, so a
        # client hammering without a token cannot flood the log.
        held = self._throttle.allow("refused")
        if held is not None:
            log.warning("refused %d unauthenticated request(s) so far (latest to %s)%s", self.refused,
                        scope.get("path"), held_back(held))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = unauthorized_body(message)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
