"""``otel-mcp migrate``: the whole corpus with its history, from SQLite to PostgreSQL and back, compared."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from postgres_server import PostgresServer

from otel_mcp.compose.engine import ComposeRequest
from otel_mcp.compose.service import ComposeService
from otel_mcp.interchange import import_directory
from otel_mcp.store import RuleStore, RuleStoreBase
from otel_mcp.store.backends import open_store

# Words of the corpus with fewer hits than a search page holds (200), so the hit sets compare whole:
# common and rare words, a phrase, a hyphenated word and digits, accented letters (folded like unicode61).
QUERIES = ("api", "error handling", "prefer", "conventions", "tailwind css", "next.js", "react-query", "vue 3",
           "dépendance", "dependance", "basé", "r²", "python fastapi", "zod", "always", "ui")

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _corpus_with_history(db: Path, corpus: Path) -> list[str]:
    """The corpus imported into SQLite, then edited: updates, a delete, a rollback, a re-created rule."""
    store = RuleStore(db)
    try:
        results = import_directory(store, corpus, ".")
        ids = sorted(r.rule_id for r in results if r.status == "created" and r.rule_id)
        for rule_id in ids[:5]:
            store.update(rule_id, 1, {"body": store.get(rule_id).body + "\nEdited after the import.\n"})
        store.delete(ids[5], 1)
        store.rollback(ids[0], 1, expected_version=2)
        store.delete(ids[6], 1)
        store.rollback(ids[6], 1)
        return ids
    finally:
        store.close()


def _same_stores(a: RuleStoreBase, b: RuleStoreBase) -> None:
    assert b.full_history() == a.full_history()
    assert b.snapshot()[1] == a.snapshot()[1]
    for query in QUERIES:
        hits_a, hits_b = ({h.rule.id for h in s.search(query, limit=200)} for s in (a, b))
        assert len(hits_a) < 200, f"{query!r} fills a page: pick a rarer word"
        assert hits_b == hits_a, f"search {query!r}: {sorted(hits_a ^ hits_b)}"
    request = ComposeRequest.from_args(["src/app/page.tsx", "api/main.py"], tags=None)
    assert ComposeService(b).compose(request).markdown == ComposeService(a).compose(request).markdown


def test_the_corpus_with_its_history_migrates_to_postgresql_and_back(
        corpus_dir: Path, tmp_path: Path, postgres_server: PostgresServer, postgres_dsn: str, run_cli: Cli) -> None:
    source = tmp_path / "rules.db"
    ids = _corpus_with_history(source, corpus_dir)
    assert len(ids) >= 250

    done = run_cli("migrate", "--from", f"sqlite:///{source}", "--to", postgres_dsn)
    assert done.returncode == 0, done.stderr
    assert f"{len(ids) - 1} rules and {len(ids) + 9} history entries copied" in done.stdout
    assert postgres_server.password not in done.stdout + done.stderr
    assert "otel_mcp:***@" in done.stdout

    back = tmp_path / "back.db"
    assert run_cli("migrate", "--from", postgres_dsn, "--to", str(back)).returncode == 0
    with open_store(source) as sqlite, open_store(postgres_dsn) as postgres, open_store(back) as roundtrip:
        _same_stores(sqlite, postgres)
        _same_stores(sqlite, roundtrip)
        edited = ids[1]
        assert [e.operation for e in postgres.history(edited)] == ["update", "import"]
        assert postgres.get(edited, 1).body == sqlite.get(edited, 1).body  # old versions readable
        assert postgres.rollback(edited, 1).version == 3  # and history goes on from where it was


def test_migrate_into_a_store_that_holds_rules_changes_nothing(
        tmp_path: Path, postgres_dsn: str, run_cli: Cli, db_state: Any) -> None:
    source = tmp_path / "rules.db"
    with open_store(source) as store:
        store.create({"id": "a", "body": "from sqlite"})
    with open_store(postgres_dsn) as target:
        target.create({"id": "b", "body": "already there"})
    before = db_state(postgres_dsn)
    refused = run_cli("migrate", "--from", str(source), "--to", postgres_dsn)
    assert refused.returncode == 1
    assert "is not empty; migrate into an empty one" in refused.stderr and "Traceback" not in refused.stderr
    assert db_state(postgres_dsn) == before


@pytest.mark.parametrize("args, message", [
    (("--from", "/nonexistent/rules.db", "--to", "sqlite:///{tmp}/t.db"), "there is no database at /nonexistent"),
    (("--from", "mysql://h/db", "--to", "{tmp}/t.db"), "configuration error: --from/--to: expected a file path"),
])
def test_migrate_refuses_what_it_cannot_read(tmp_path: Path, run_cli: Cli, args: tuple[str, ...],
                                             message: str) -> None:
    refused = run_cli("migrate", *(a.format(tmp=tmp_path) for a in args))
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert not (tmp_path / "t.db").exists()


def test_history_is_copied_as_written_even_where_todays_hash_differs(
        tmp_path: Path, postgres_dsn: str, run_cli: Cli) -> None:
    """An entry written by an older release (another etag scheme) keeps its etag: the copy is the history."""
    source = tmp_path / "rules.db"
    with open_store(source) as store:
        store.create({"id": "old", "body": "one"})
        store.update("old", 1, {"body": "two"})
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE rule_versions SET etag = 'etag-of-an-older-release' WHERE version = 1")
    done = run_cli("migrate", "--from", str(source), "--to", postgres_dsn)
    assert done.returncode == 0, done.stderr
    with open_store(postgres_dsn) as target:
        assert [e.etag for e in target.history("old")][1] == "etag-of-an-older-release"
