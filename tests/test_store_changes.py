"""Catching up with writes without reloading every rule (``changes_since``), on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.compose.service import ComposeService
from otel_mcp.store import RuleStoreBase
from otel_mcp.store.backends import open_store


@pytest.mark.both_backends
def test_changes_since_lists_written_and_deleted_rules(store: RuleStoreBase) -> None:
    store.create({"id": "a", "body": "a1"})
    store.create({"id": "b", "body": "b1"})
    start = store.generation()
    store.update("a", 1, {"body": "a2"})
    store.delete("b", 1)
    store.create({"id": "c", "body": "c1"})
    changes = store.changes_since(start)
    assert changes.generation == store.generation() == start + 3
    assert {r.id: r.body for r in changes.written} == {"a": "a2", "c": "c1"}
    assert changes.deleted == {"b"}
    assert store.changes_since(changes.generation).written == []


@pytest.mark.both_backends
def test_an_unchanged_import_does_not_move_the_generation(store: RuleStoreBase) -> None:
    store.upsert({"id": "a", "body": "same"})
    before = store.generation()
    rule, status = store.upsert({"id": "a", "body": "same"})
    assert status == "unchanged" and rule.version == 1
    assert store.generation() == before
    assert len(store.history("a")) == 1


@pytest.mark.both_backends
def test_service_catches_up_with_writes_from_another_connection(
        store: RuleStoreBase, reopen_store: Callable[..., RuleStoreBase]) -> None:
    reader = store
    writer = reopen_store()  # stands for another process (another replica) sharing the database
    for i in range(20):
        writer.create({"id": f"r{i}", "body": f"body {i}", "activation": "always"})
    service = ComposeService(reader)
    first = service.ruleset()
    assert len(first.rules) == 20
    writer.update("r3", 1, {"body": "changed"})
    writer.delete("r4", 1)
    second = service.ruleset()
    assert second is not first and len(first.rules) == 20  # the old set stays valid for its readers
    assert second.rules["r3"].body == "changed" and "r4" not in second.rules
    assert second.rules["r5"] is first.rules["r5"]  # unchanged rules were not read again
    markdown = service.compose(ComposeRequest.from_args()).markdown
    assert "changed" in markdown and "<!-- rule:r4@" not in markdown


@pytest.mark.both_backends
def test_opening_an_up_to_date_store_does_not_wait_for_a_writer(
        store: RuleStoreBase, reopen_store: Callable[..., RuleStoreBase], hold_write_lock: Callable[[], Any]) -> None:
    holder = hold_write_lock()  # another process in the middle of a write
    try:
        assert reopen_store(timeout_s=0.1).count() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.both_backends
def test_l2_hits_take_bodies_from_the_rule_set_without_reading_them_from_disk(
        store: RuleStoreBase, tmp_path: Path) -> None:
    from otel_mcp.cache import TieredCache

    for i in range(5):
        store.create({"id": f"r{i}", "body": f"# Rule {i}\n\n" + "text " * 200, "activation": "always"})
    cache = TieredCache(tmp_path / "cache")
    service = ComposeService(store, cache)
    request = ComposeRequest.from_args()
    first = service.compose(request)
    cache.clear_l1(bodies=True)  # as in a fresh process: only L2's skeleton and the rule set remain
    fetched: list[list[str]] = []
    original = cache._l2_get_bodies
    cache._l2_get_bodies = lambda l2, digests: fetched.append(digests) or original(l2, digests)  # type: ignore[method-assign]
    second = service.compose(request)
    assert second.markdown == first.markdown and cache.stats().l2_hits == 1
    assert fetched == []  # every body came from memory
    store.update("r0", 1, {"body": "changed"})
    assert "changed" in service.compose(request).markdown
    cache.close()


@pytest.mark.both_backends
def test_a_database_copied_from_a_template_never_gets_the_templates_cached_compositions(
        tmp_path: Path, store_backend: str, request: pytest.FixtureRequest) -> None:
    """Copies (a file copy; PostgreSQL's CREATE DATABASE ... TEMPLATE, as a restore would) share store id and
    generation numbers but diverge: keys come from content, not counters."""
    import shutil

    from otel_mcp.cache import TieredCache

    copies: dict[str, Path | str]
    if store_backend == "postgresql":
        server = request.getfixturevalue("postgres_server")
        source: Path | str = server.create_database()
    else:
        source = tmp_path / "template.db"
    with open_store(source) as template:
        template.create({"id": "a", "body": "a1", "activation": "always"})
        template.create({"id": "b", "body": "b1", "activation": "always"})
    if isinstance(source, Path):
        copies = {name: Path(shutil.copy(source, tmp_path / f"{name}.db")) for name in ("one", "two")}
    else:
        copies = {name: server.create_database(template=source.rsplit("/", 1)[1]) for name in ("one", "two")}
    everything = ComposeRequest.from_args()
    markdowns = []
    for name, rule in (("one", "a"), ("two", "b")):  # the same generation, different contents
        store = open_store(copies[name])
        store.update(rule, 1, {"body": f"{rule} changed in {name}"})
        with TieredCache(tmp_path / "shared-cache") as cache:
            markdowns.append(ComposeService(store, cache).compose(everything).markdown)
        store.close()
    assert "a changed in one" in markdowns[0] and "b1" in markdowns[0]
    assert "b changed in two" in markdowns[1] and "a1" in markdowns[1]
