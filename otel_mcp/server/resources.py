"""Resources (``rules://index``, ``rules://{id}``, ``rules://{id}@{version}``) and the ``compose`` prompt."""

from __future__ import annotations

import json

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.errors import RuleError, RuleNotFound
from otel_mcp.server.context import RulesContext


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register_resources(server: MCPServer, rules: RulesContext) -> None:
    store, composer = rules.store, rules.composer

    @server.resource("rules://index", name="rules-index", mime_type="application/json")
    async def rules_index() -> str:
        """Every rule's metadata (no bodies), ordered by id."""
        _, all_rules = await anyio.to_thread.run_sync(store.snapshot)
        return json.dumps([r.to_dict(with_body=False) for r in all_rules])

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
        except RuleError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        return composition.markdown
