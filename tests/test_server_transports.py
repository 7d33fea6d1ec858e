"""The server over stdio and streamable HTTP, driven by the SDK's real client: the same scenarios on both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import server_scenarios as scenarios

pytestmark = pytest.mark.anyio  # every test runs over stdio and over streamable HTTP (the mcp_server fixture)


# The whole flow and the bad input on both rule stores: `serve --db postgresql://...` behaves as on SQLite.
@pytest.mark.both_backends

async def test_done_when_flow(mcp_server: Any, mcp_client: Any, calls: Any, corpus_dir: Path) -> None:
    await scenarios.done_when_flow(mcp_client, mcp_server, calls, corpus_dir)


async def test_tool_surface(mcp_server: Any, mcp_client: Any, calls: Any) -> None:
    await scenarios.tool_surface(mcp_client, mcp_server, calls)


@pytest.mark.both_backends
async def test_bad_input_for_every_tool(mcp_server: Any, mcp_client: Any, calls: Any, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    await scenarios.bad_input_every_tool(mcp_client, mcp_server, calls, outside)


async def test_resources_and_prompt(mcp_server: Any, mcp_client: Any, calls: Any) -> None:
    await scenarios.resources_and_prompt(mcp_client, mcp_server, calls)
