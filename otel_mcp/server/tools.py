"""The MCP tools: thin adapters from tool arguments to the store and the composer.

Each tool validates its arguments (pydantic from the signature, then the
model's own checks) before touching the store, and turns every domain error
into a ``ToolError``: the client gets an ``isError`` result with the precise
message, never a traceback, and the stored data is unchanged. Results take
the shapes of ``otel_mcp.server.results`` and obey ``max_result_bytes``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from otel_mcp.compose.engine import ComposeRequest, import_problem
from otel_mcp.errors import InvalidRule, RuleError
from otel_mcp.interchange import export_directory, import_directory
from otel_mcp.server.changes import ChangeAnnouncer
from otel_mcp.server.context import RulesContext
from otel_mcp.server.results import ResultLimit, data_cost, data_result, document_result
from otel_mcp.store.base import StoreBusy
from otel_mcp.store.model import SPEC_FIELDS, Rule, build_spec

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ActivationArg = Literal["always", "auto", "agent_requested", "manual"]
RuleId = Annotated[str, Field(description="rule id: lowercase letters, digits, '.', '_', '-'", max_length=128)]
StrList = Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=256)]
WRITE_TOOLS = frozenset(
    {"create_rule", "update_rule", "delete_rule", "rollback_rule", "import_rules", "export_rules"}
)
# A document (markdown) as text, its metadata as structured content: see otel_mcp.server.results.
Document = Annotated[CallToolResult, dict[str, Any]]
# What to do instead when a tool's result is over max_result_bytes.
RESULT_HINTS = {
    "compose_rules": "pass a token_budget (about 4 bytes a token) or select fewer rules",
    "get_rule": "export_rules writes the rule to a file, or raise max_result_bytes",
    "search_rules": "ask for fewer results with `limit`",
    "rule_history": "ask for fewer versions with `limit`",
}
DEFAULT_HINT = "raise max_result_bytes"


def _not_unicode(value: Any) -> bool:
    """True if ``value`` holds a string that is not valid Unicode (a lone surrogate, from a JSON ``\\ud800``)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_not_unicode(k) or _not_unicode(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_not_unicode(v) for v in value)
    return False


def _surface(limit: ResultLimit) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[CallToolResult]]]:
    """Wrap a tool: refuse non-Unicode arguments, shape its result, bound its size, and turn domain errors
    into ``ToolError`` (an ``isError`` result with the message)."""

    def decorate(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[CallToolResult]]:
        hint = RESULT_HINTS.get(fn.__name__, DEFAULT_HINT)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
            # Lone surrogates pass JSON and pydantic but cannot be stored or hashed: refuse them by name
            # instead of failing deep in the store with an unexpected UnicodeEncodeError.
            bad = sorted(name for name, value in kwargs.items() if _not_unicode(value))
            if bad:
                raise ToolError(f"argument(s) {', '.join(bad)} contain text that is not valid Unicode (lone surrogate)")
            try:
                out = await fn(*args, **kwargs)
                return limit.check(out if isinstance(out, CallToolResult) else data_result(out), hint)
            except (RuleError, StoreBusy) as exc:
                raise ToolError(str(exc)) from exc

        return wrapper

    return decorate


def register_tools(server: MCPServer, rules: RulesContext, changes: ChangeAnnouncer) -> None:
    store, composer, settings = rules.store, rules.composer, rules.settings
    result_limit = ResultLimit(settings.max_result_bytes)
    surface = _surface(result_limit)

    def ensure_writable() -> None:
        if settings.read_only:
            raise InvalidRule("this server is read-only: write tools are disabled")

    async def run(fn: Callable[[], R]) -> R:
        return await anyio.to_thread.run_sync(fn)

    async def changed() -> None:
        """Tell subscribers what changed (best effort: a notification never fails a write)."""
        try:
            await changes.announce()
        except Exception:
            log.warning("announcing a change to subscribers failed", exc_info=True)

    @server.tool()
    @surface
    async def list_rules(
        activation: ActivationArg | None = None,
        tag: str | None = None,
        enabled: bool | None = None,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """List rules (metadata only, no bodies), ordered by id, one page at a time (a page may hold fewer
        than `limit` rules when they would not fit in one result; follow next_cursor)."""
        page, next_cursor = await run(
            lambda: store.list_page(activation=activation, tag=tag, enabled=enabled, after=cursor, limit=limit)
        )
        items = [r.to_dict(with_body=False) for r in page]
        kept = result_limit.fit(items, data_cost)
        if kept < len(items):
            items, next_cursor = items[:kept], items[kept - 1]["id"]
        return {"rules": items, "next_cursor": next_cursor}

    @server.tool()
    @surface
    async def get_rule(id: RuleId, version: Annotated[int | None, Field(ge=1)] = None) -> Document:
        """Get one rule: its body as text, its other fields as structured content (and as JSON text);
        pass `version` for an older version from its history."""
        rule = await run(lambda: store.get(id, version))
        return document_result(rule.body, rule.to_dict(with_body=False))

    @server.tool()
    @surface
    async def create_rule(
        id: RuleId,
        body: Annotated[str, Field(description="markdown instructions")],
        description: str = "",
        activation: ActivationArg = "manual",
        globs: StrList | None = None,
        exclude_globs: StrList | None = None,
        tags: StrList | None = None,
        priority: int = 0,
        imports: StrList | None = None,
        overrides: StrList | None = None,
        settings: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Create a rule. Fails if the id exists. Returns the stored rule's metadata (version 1)."""
        ensure_writable()
        fields = {k: v for k, v in locals().items() if k in SPEC_FIELDS}
        rule = await run(lambda: store.create(fields))
        await changed()
        return rule.to_dict(with_body=False)

    @server.tool()
    @surface
    async def update_rule(
        id: RuleId,
        expected_version: Annotated[int, Field(ge=1, description="the version you read; stale -> conflict")],
        body: str | None = None,
        description: str | None = None,
        activation: ActivationArg | None = None,
        globs: StrList | None = None,
        exclude_globs: StrList | None = None,
        tags: StrList | None = None,
        priority: int | None = None,
        imports: StrList | None = None,
        overrides: StrList | None = None,
        settings: dict[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Change some fields of a rule, if it is still at `expected_version` (optimistic concurrency)."""
        ensure_writable()
        changes = {k: v for k, v in locals().items() if k in SPEC_FIELDS and k != "id" and v is not None}
        rule = await run(lambda: store.update(id, expected_version, changes))
        await changed()
        return rule.to_dict(with_body=False)

    @server.tool()
    @surface
    async def delete_rule(id: RuleId, expected_version: Annotated[int, Field(ge=1)]) -> dict[str, Any]:
        """Delete a rule if it is still at `expected_version`. Its history is kept (see rollback_rule)."""
        ensure_writable()
        version = await run(lambda: store.delete(id, expected_version))
        await changed()
        return {"id": id, "deleted": True, "version": version}

    @server.tool()
    @surface
    async def compose_rules(
        context_files: StrList | None = None,
        tags: StrList | None = None,
        rule_ids: StrList | None = None,
        agent: str | None = None,
        token_budget: Annotated[int | None, Field(ge=1)] = None,
    ) -> Document:
        """Compose the rules that apply to these files/tags/ids into one markdown document (the text) plus a
        manifest (structured content, and as JSON text): what was included and why, what was dropped,
        settings conflicts, token estimate."""
        request = ComposeRequest.from_args(context_files, tags, rule_ids, agent, token_budget)
        composition = await run(lambda: composer.compose(request))
        return document_result(composition.markdown, composition.manifest())

    @server.tool()
    @surface
    async def search_rules(
        query: Annotated[str, Field(min_length=1, max_length=1000)],
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        """Full-text search over rule ids, descriptions and bodies, best match first."""
        hits = await run(lambda: store.search(query, limit))
        return {"results": [{**h.rule.to_dict(with_body=False), "snippet": h.snippet} for h in hits]}

    @server.tool()
    @surface
    async def rule_history(id: RuleId, limit: Annotated[int, Field(ge=1, le=200)] = 50) -> dict[str, Any]:
        """A rule's versions, newest first (create, update, delete, rollback, import)."""
        entries = await run(lambda: store.history(id, limit))
        return {"id": id, "versions": [e.to_dict() for e in entries]}

    @server.tool()
    @surface
    async def rollback_rule(
        id: RuleId,
        to_version: Annotated[int, Field(ge=1)],
        expected_version: Annotated[int | None, Field(ge=1)] = None,
    ) -> dict[str, Any]:
        """Restore the content of `to_version` as a new version (also revives a deleted rule)."""
        ensure_writable()
        rule = await run(lambda: store.rollback(id, to_version, expected_version))
        await changed()
        return rule.to_dict(with_body=False)

    @server.tool()
    @surface
    async def validate_rule(
        id: RuleId,
        body: str,
        description: str = "",
        activation: ActivationArg = "manual",
        globs: StrList | None = None,
        exclude_globs: StrList | None = None,
        tags: StrList | None = None,
        priority: int = 0,
        imports: StrList | None = None,
        overrides: StrList | None = None,
        settings: dict[str, Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Check a rule without storing it: field errors, an import cycle or an import chain too deep
        (compose would skip the rule), plus warnings about imports and overrides that name rules that do
        not exist."""
        fields = {k: v for k, v in locals().items() if k in SPEC_FIELDS}
        try:
            spec = build_spec(fields, store.limits)
        except InvalidRule as exc:
            return {"valid": False, "errors": [str(exc)], "warnings": []}
        known = composer.ruleset().rules
        warnings = [f"import {i!r} does not exist yet" for i in spec.imports if i not in known]
        warnings += [f"override {o!r} does not exist" for o in spec.overrides if o not in known]
        problem = import_problem(known, Rule(**vars(spec)), composer.options)
        if problem is not None and problem[0] != "missing_import":
            return {"valid": False, "errors": [problem[1]], "warnings": warnings}
        if problem is not None and not warnings:  # a missing import further down the chain
            warnings.append(problem[1])
        return {"valid": True, "errors": [], "warnings": warnings, "etag": spec.content_hash()}

    @server.tool()
    @surface
    async def import_rules(
        directory: Annotated[str, Field(description="folder relative to the server's files root")],
        format: Literal["auto", "cursor", "claude", "copilot", "agents"] = "auto",
    ) -> dict[str, Any]:
        """Import rule files (.mdc, .claude/rules/*.md, *.instructions.md, AGENTS.md) from a folder.
        Each file is reported on its own; a bad file does not stop the others."""
        ensure_writable()
        results = await run(lambda: import_directory(store, settings.files_root, directory, format))
        await changed()
        counts: dict[str, int] = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {"counts": counts, "files": [r.to_dict() for r in results]}

    @server.tool()
    @surface
    async def export_rules(
        directory: Annotated[str, Field(description="folder relative to the server's files root")],
        format: Literal["cursor", "claude", "copilot", "agents"] = "cursor",
    ) -> dict[str, Any]:
        """Write every rule as files of the given tool's format into a folder."""
        ensure_writable()
        results = await run(lambda: export_directory(store, settings.files_root, directory, format))
        return {"written": len(results), "files": [r.to_dict() for r in results]}

    @server.tool()
    @surface
    async def warm_cache(limit: Annotated[int, Field(ge=1, le=10_000)] = 256) -> dict[str, Any]:
        """Admin: recompose the most popular compositions into the cache now, hottest first."""
        if rules.cache is None:
            raise InvalidRule("the composition cache is disabled on this server")
        from otel_mcp.cache import warm

        progress = await run(lambda: warm(composer, rules.cache, limit))
        return {"warmed": progress.to_dict(), "cache": rules.cache.stats().to_dict()}

    if settings.read_only:
        for name in WRITE_TOOLS:
            server.remove_tool(name)
