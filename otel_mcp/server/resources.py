"""Resources (``rules://index``, ``rules://{id}``, ``rules://{id}@{version}``) and the ``compose`` prompt.

``rules://index`` is paginated: each page is ``{"rules": [...], "next": <uri of the next page or null>}``,
cut so that it fits ``max_result_bytes``; every resource read is refused (with its size) when it would not.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, InputRequiredResult

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.errors import RuleError, RuleNotFound
from otel_mcp.server.context import RulesContext
from otel_mcp.server.results import ResultLimit, compact_json, text_cost
from otel_mcp.store.base import MAX_PAGE_SIZE

INDEX_URI = "rules://index"


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register_resources(server: MCPServer, rules: RulesContext) -> None:
    store, composer = rules.store, rules.composer
    limit = ResultLimit(rules.settings.max_result_bytes)
    _bound_resource_reads(server, limit)

    def index_page(after: str | None) -> str:
        page, next_id = store.list_page(after=after, limit=MAX_PAGE_SIZE)
        items = [r.to_dict(with_body=False) for r in page]
        kept = limit.fit(items, text_cost)
        if kept < len(items):
            items, next_id = items[:kept], items[kept - 1]["id"]
        return compact_json({"rules": items, "next": f"{INDEX_URI}?after={next_id}" if next_id else None})

    @server.resource(INDEX_URI, name="rules-index", mime_type="application/json")
    async def rules_index() -> str:
        """Rules' metadata (no bodies), ordered by id, one page at a time: follow `next`."""
        return await anyio.to_thread.run_sync(index_page, None)

    @server.resource(INDEX_URI + "{?after}", name="rules-index-page", mime_type="application/json")
    async def rules_index_after(after: str = "") -> str:
        """The page of the rules index after rule id `after`."""
        return await anyio.to_thread.run_sync(index_page, after or None)

    @server.resource("rules://{ref}", name="rule", mime_type="text/markdown")
    async def rule_body(ref: str) -> str:
        """A rule's body: `rules://{id}` for the current version, `rules://{id}@{version}` for an older one."""
        rule_id, _, raw_version = ref.partition("@")
        version: int | None = None
        if raw_version:
            if not raw_version.isdigit():
                raise ResourceNotFoundError(f"version {raw_version!r} in rules://{ref} is not a number")
            version = int(raw_version)
        try:
            rule = await anyio.to_thread.run_sync(lambda: store.get(rule_id, version))
        except RuleNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except RuleError as exc:
            raise ResourceError(str(exc)) from exc
        return rule.body

    @server.prompt(name="compose", description="The rules that apply to the given files, as one instruction.")
    async def compose_prompt(
        context_files: str = "", tags: str = "", rule_ids: str = "", agent: str = "", token_budget: str = ""
    ) -> str:
        """Arguments are comma-separated lists (prompt arguments are strings)."""
        # The SDK masks any other exception from a prompt as "Internal server error": raise MCPError
        # so the client gets the precise message.
        budget = None
        if token_budget.strip():
            if not token_budget.strip().isdigit():
                raise MCPError(INVALID_PARAMS, "token_budget must be a positive integer")
            budget = int(token_budget)
        try:
            request = ComposeRequest.from_args(
                _split_csv(context_files), _split_csv(tags), _split_csv(rule_ids), agent or None, budget
            )
            composition = await anyio.to_thread.run_sync(lambda: composer.compose(request))
            return limit.check_text(composition.markdown, "pass a token_budget (about 4 bytes a token)")
        except RuleError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None


def _bound_resource_reads(server: MCPServer, limit: ResultLimit) -> None:
    """Every ``resources/read`` answer fits ``max_result_bytes``, else a JSON-RPC error naming its size."""
    original = server.read_resource

    async def read_resource(uri: Any, context: Any = None) -> Any:
        contents = await original(uri, context)
        if isinstance(contents, InputRequiredResult):
            return contents
        contents = list(contents)
        for item in contents:
            if isinstance(item.content, str):
                try:
                    limit.check_text(item.content, "export_rules writes a rule to a file")
                except RuleError as exc:
                    raise MCPError(INVALID_PARAMS, f"{uri}: {exc}") from None
        return contents

    server.read_resource = read_resource  # type: ignore[method-assign]
