"""Assemble the MCP server and serve it over stdio or streamable HTTP.

The HTTP app adds the operator's endpoints next to ``/mcp``: ``/healthz``
(liveness, always open) and ``/readyz`` (database answers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import types
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otel_mcp import __version__, mcp_internals
from otel_mcp.config import Settings
from otel_mcp.errors import RuleError
from otel_mcp.server.admission import Admission, Gate
from otel_mcp.server.auth import BearerAuthMiddleware, is_loopback
from otel_mcp.server.changes import ChangeAnnouncer
from otel_mcp.server.context import RulesContext
from otel_mcp.server.limits import JsonRpcErrorBodies
from otel_mcp.server.resources import register_resources
from otel_mcp.server.sessions import evict_idle_sessions
from otel_mcp.server.subscriptions import ChangeBus, serve_handshake_subscriptions
from otel_mcp.server.tools import register_tools
from otel_mcp.throttle import throttle_logger

INSTRUCTIONS = (
    "Stores coding-agent rules and composes the ones that apply to a task. Call compose_rules with the files "
    "you are working on to get your instructions; use list_rules/search_rules to browse, and "
    "create_rule/update_rule (with expected_version) to change them."
)


def build_server(rules: RulesContext) -> MCPServer:
    bus = ChangeBus()
    changes = rules.changes = ChangeAnnouncer(rules.store, bus)
    poll_seconds = rules.settings.change_poll_ms / 1000

    @asynccontextmanager
    async def watch_other_writers(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        # Entered once per HTTP app and once per stdio connection: one watcher per server process.
        async with anyio.create_task_group() as group:
            group.start_soon(changes.watch, poll_seconds)
            yield {}
            group.cancel_scope.cancel()

    server: MCPServer = MCPServer(
        "otel-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=rules.settings.log_level.upper(),  # type: ignore[arg-type]
        subscriptions=bus,
        lifespan=watch_other_writers,
    )
    register_tools(server, rules, changes)
    serve_handshake_subscriptions(server, bus, rules.settings.max_subscriptions)
    register_resources(server, rules)
    _prompt_errors_are_invalid_params(server)
    _register_logging_and_completion(server, rules)
    return server


COMPLETABLE_ARGUMENTS = frozenset({"ref", "rule_ids", "id"})
MAX_COMPLETIONS = 100  # the spec's cap on values per completion


def _register_logging_and_completion(server: MCPServer, rules: RulesContext) -> None:
    """``logging/setLevel`` (accepted; the level is kept per server, we send no log notifications below it) and
    ``completion/complete`` for rule ids (the ``rules://{ref}`` template and the prompt's ``rule_ids``)."""
    lowlevel = mcp_internals.lowlevel_server(server)
    levels: dict[str, str] = {}

    async def set_level(_ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        levels["client"] = str(params.level)
        return types.EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)

    @server.completion()  # type: ignore[no-untyped-call,untyped-decorator]
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion | None:
        if argument.name not in COMPLETABLE_ARGUMENTS:
            return None
        prefix = str(argument.value).rsplit(",", 1)[-1].strip()
        ruleset = await anyio.to_thread.run_sync(rules.composer.ruleset)
        ids = sorted(rule_id for rule_id in ruleset.rules if rule_id.startswith(prefix))
        return types.Completion(values=ids[:MAX_COMPLETIONS], total=len(ids), has_more=len(ids) > MAX_COMPLETIONS)


def _prompt_errors_are_invalid_params(server: MCPServer) -> None:
    """An unknown prompt or bad prompt arguments are the client's error: answer ``-32602`` with the message.

    The SDK turns them into a ``ValueError`` that its dispatcher logs with a full traceback and answers with
    code 0, so any client could flood the log with tracebacks by asking for prompts that do not exist.
    """
    original = server.get_prompt

    async def get_prompt(name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        try:
            return await original(name, arguments, context)
        except MCPError:
            raise
        except (ValueError, RuleError) as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

    server.get_prompt = get_prompt  # type: ignore[method-assign]


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _listed(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host header must name this server, the Origin header (sent by browsers
    only) must be this server's own or one of ``allowed_origins`` (a page on another local port is refused)."""
    hosts = list(LOOPBACK_NAMES)
    if not is_loopback(settings.host) and settings.host not in ("0.0.0.0", "::"):
        hosts.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
    allowed = [f"{h}:*" for h in hosts]  # a rebinding attacker's Host is its own domain, never these
    for name in _listed(settings.public_hosts):
        # a bare name is accepted on any port, and without one (behind a proxy on 80/443)
        allowed += [name] if ":" in name.lstrip("[").split("]")[-1] else [name, f"{name}:*"]
    # This server's own origin is same-origin, never a rebinding page (whose origin is the attacker's domain);
    # the MCP conformance suite requires it. Another port on localhost is another origin: refused.
    own = [f"http://{h}:{settings.port}" for h in hosts] if settings.port else []
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=allowed,
        allowed_origins=own + _listed(settings.allowed_origins),
    )


def build_http_app(server: MCPServer, rules: RulesContext) -> Starlette:
    """The HTTP app; ``app.state.gate`` is its ``admission.Gate`` (the server closes its streams at shutdown)."""
    settings = rules.settings

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(_: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            checks["rules"] = await anyio.to_thread.run_sync(rules.store.count)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        checks.update(rules.readiness())
        checks["admission"] = gate.snapshot()
        ready = checks["database"] == "ok"
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readyz)
    app = server.streamable_http_app(
        max_request_body_size=settings.max_request_bytes,
        max_sessions=settings.max_sessions,
        session_idle_timeout=settings.session_idle_timeout_s,
        transport_security=transport_security(settings),
        host=settings.host,
    )
    throttle_logger("mcp.server.transport_security")  # it warns once per refused Host/Origin: once a minute
    evict_idle_sessions(server.session_manager)
    gate = Gate(max_requests_in_flight=settings.max_requests_in_flight, max_streams=settings.max_streams,
                read_timeout=settings.request_read_timeout_s, max_body_bytes=settings.max_request_bytes)
    app.state.gate = gate
    # Outermost last: auth, then admission (bounds, body deadline), then JSON-RPC error bodies, then the SDK.
    app.add_middleware(JsonRpcErrorBodies, path="/mcp", max_request_bytes=settings.max_request_bytes)
    app.add_middleware(Admission, gate=gate)
    token = settings.bearer_token()
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token)
    return app
