"""The token budget is a promise, on the whole real corpus: for every budget of a sweep and several file
contexts, the rendered markdown (markers, stubs, summary lines, everything) is within the budget by the
project's own estimator, or the request is refused naming the smallest budget that fits."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_mcp.compose import ComposeRequest, Composition, estimate_tokens
from otel_mcp.compose.service import ComposeService
from otel_mcp.errors import LimitExceeded
from otel_mcp.interchange import import_directory
from otel_mcp.store import RuleStore

BUDGETS = (500, 1_000, 2_000, 4_000, 8_000, 20_000, 50_000, 100_000, 200_000)
CONTEXTS = (("src/app.py",), ("web/App.tsx",), ("README.md",), ("cmd/main.go", "go.mod"),
            ("src/lib.rs", "Cargo.toml", "docs/guide.md"))
SMALLEST = re.compile(r"the smallest budget that fits is (\d+)$")


@pytest.fixture
def corpus_store(tmp_path: Path, corpus_dir: Path) -> Iterator[RuleStore]:
    store = RuleStore(tmp_path / "budget.db")
    results = import_directory(store, corpus_dir.parent, corpus_dir.name)
    assert store.count() == len(results) == len(list(corpus_dir.glob("*.mdc")))
    yield store
    store.close()


def compose_within(service: ComposeService, files: tuple[str, ...], budget: int) -> Composition:
    """The composition at ``budget``; a refusal must name a budget that composes and fits, and be the smallest."""
    try:
        return service.compose(ComposeRequest.from_args(files, token_budget=budget))
    except LimitExceeded as refused:
        found = SMALLEST.search(str(refused))
        assert found, str(refused)
        smallest = int(found.group(1))
        assert smallest > budget
        fitting = service.compose(ComposeRequest.from_args(files, token_budget=smallest))
        assert estimate_tokens(fitting.markdown) <= smallest
        with pytest.raises(LimitExceeded):
            service.compose(ComposeRequest.from_args(files, token_budget=smallest - 1))
        return fitting


def test_rendered_markdown_is_within_every_budget(corpus_store: RuleStore) -> None:
    for files in CONTEXTS:
        check_budgets(corpus_store, files)


def check_budgets(corpus_store: RuleStore, files: tuple[str, ...]) -> None:
    service = ComposeService(corpus_store)
    unbudgeted = service.compose(ComposeRequest.from_args(files))
    for budget in BUDGETS:
        composition = compose_within(service, files, budget)
        spent = estimate_tokens(composition.markdown)
        assert spent == composition.token_estimate
        if composition.token_budget == budget:
            assert spent <= budget, (files, budget, spent)
        dropped = {d["id"] for d in composition.dropped}
        shown = {i["id"] for i in composition.included}
        assert shown | dropped >= {i["id"] for i in unbudgeted.included}  # every rule accounted for
        if budget >= unbudgeted.token_estimate:
            assert composition.markdown == unbudgeted.markdown
        again = ComposeService(corpus_store).compose(
            ComposeRequest.from_args(files, token_budget=composition.token_budget))
        assert again.composition_hash == composition.composition_hash  # deterministic


def test_issue_example_over_the_real_server(
    corpus_dir: Path, http_server_factory: Any, files_root: Path, calls: Any
) -> None:
    """The issue's case (a .py file, budget 4,000: 11,769 tokens before) through the official client over HTTP."""
    import anyio

    shutil.copytree(corpus_dir, files_root / "corpus")
    server = http_server_factory()

    async def run() -> None:
        async with server.client() as client:
            await calls.ok(client, "import_rules", {"directory": "corpus", "format": "cursor"})
            result = await client.call_tool("compose_rules", {"context_files": ["src/app.py"], "token_budget": 4000})
            data = calls.data(result)
            markdown = data["markdown"] if "markdown" in data else result.content[0].text
            manifest = data.get("manifest", data)
            assert estimate_tokens(markdown) == manifest["token_estimate"] <= 4000
            assert "more matching rules left out for the token budget" in markdown

    anyio.run(run)
