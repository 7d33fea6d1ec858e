"""What only the PostgreSQL store has: its schema and migrations, NOTIFY on commit, its search tokens, the
``db`` setting that selects it, and connection strings shown without their password."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer

from otel_mcp.config import Settings
from otel_mcp.errors import InvalidRule, RuleExists
from otel_mcp.store import StoreUnavailable
from otel_mcp.store import postgres_schema as schema
from otel_mcp.store.backends import database_setting, open_store, redact
from otel_mcp.store.postgres import CHANGES_CHANNEL, PostgresRuleStore
from otel_mcp.store.postgres_search import tsquery_literal, tsvector_literal, words
from otel_mcp.store.schema import SchemaTooNew

# -- selection and redaction ------------------------------------------------------------------


def test_the_db_setting_selects_the_backend(tmp_path: Path) -> None:
    url = "postgresql://u:p@db.example:5433/rules?sslmode=require"
    assert Settings.load({}, env={"OTEL_MCP_DB": url}).db == url
    assert Settings.load({"db": "postgres://u@h/d"}, env={}).db == "postgres://u@h/d"
    assert Settings.load({"db": f"sqlite:///{tmp_path}/r.db"}, env={}).db == tmp_path / "r.db"
    assert Settings.load({"db": f"sqlite:////{tmp_path}/r.db"}, env={}).db == tmp_path / "r.db"
    assert Settings.load({"db": "~/r.db"}, env={}).db == Path.home() / "r.db"
    with pytest.raises(ValueError, match="expected a file path, sqlite:///path or postgresql://"):
        database_setting("mysql://h/db")


@pytest.mark.parametrize("url, shown", [
    ("postgresql://otel:s3cr%40t@db:5432/rules", "postgresql://otel:***@db:5432/rules"),
    ("postgres://otel:p@ss:w0rd@db/rules", "postgres://otel:***@db/rules"),
    ("postgresql://otel@db/rules?password=s3cret&sslmode=require",
     "postgresql://otel@db/rules?password=***&sslmode=require"),
    ("postgresql://db/rules", "postgresql://db/rules"),
    (Path("/var/lib/rules.db"), "/var/lib/rules.db"),
])
def test_redact_hides_passwords_only(url: Path | str, shown: str) -> None:
    assert redact(url) == shown


def test_a_wrong_password_is_one_clear_error_without_the_password(postgres_server: PostgresServer) -> None:
    wrong = postgres_server.dsn().replace(postgres_server.password, "not-the-password")
    with pytest.raises(StoreUnavailable) as info:
        open_store(wrong, timeout_s=2)
    message = str(info.value)
    assert "password authentication failed" in message and "cannot be opened" in message
    assert "not-the-password" not in message and "otel_mcp:***@127.0.0.1" in message


# -- schema and migrations -----------------------------------------------------------------------


def _version(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])  # type: ignore[index]


def test_a_new_database_gets_the_current_schema_once(postgres_dsn: str) -> None:
    first = open_store(postgres_dsn)
    first.create({"id": "a", "body": "x"})
    second = open_store(postgres_dsn)  # an up-to-date database is only read
    assert _version(postgres_dsn) == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
    assert second.store_id == first.store_id != 0
    assert second.get("a").body == "x"
    first.close()
    second.close()


def test_a_newer_schema_is_refused_and_left_alone(postgres_dsn: str) -> None:
    open_store(postgres_dsn).close()
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (schema.SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="newer than this otel-mcp supports"):
        open_store(postgres_dsn)
    assert _version(postgres_dsn) == schema.SCHEMA_VERSION + 1


def test_a_failed_migration_leaves_nothing(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, "CREATE TABLE broken (x INT); NOT SQL;"))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(StoreUnavailable, match="syntax error"):
        open_store(postgres_dsn)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('rules'), to_regclass('broken')").fetchone() == (None, None)


# -- NOTIFY on commit ----------------------------------------------------------------------------


def test_every_committed_write_notifies_its_generation_and_nothing_else_does(postgres_dsn: str) -> None:
    store = open_store(postgres_dsn)
    listener = psycopg.connect(postgres_dsn, autocommit=True)
    listener.execute(f"LISTEN {CHANGES_CHANNEL}")
    store.create({"id": "a", "body": "one"})
    store.upsert({"id": "a", "body": "one"})  # unchanged: rolled back
    with pytest.raises(RuleExists):
        store.create({"id": "a", "body": "two"})  # refused: rolled back
    store.update("a", 1, {"body": "two"})
    heard = [n.payload for n in listener.notifies(timeout=1.0, stop_after=3)]
    listener.close()
    store.close()
    assert heard == ["1", "2"]


# -- search tokens -------------------------------------------------------------------------------


def test_words_are_cut_like_sqlite_unicode61() -> None:
    text = "Use foo-bar_baz, x+y, 3.5, Wörld CAFÉ ﬁsh Straße r² naïve"
    fts = sqlite3.connect(":memory:")
    fts.execute("CREATE VIRTUAL TABLE v USING fts5(t, tokenize='unicode61')")
    fts.execute("CREATE VIRTUAL TABLE t USING fts5vocab(v, 'instance')")
    fts.execute("INSERT INTO v VALUES (?)", (text,))
    assert words(text) == [row[0] for row in fts.execute("SELECT term FROM t ORDER BY offset")]


def test_tsquery_and_tsvector_literals() -> None:
    assert tsquery_literal(["foo-bar", "+++", "it's"]) == "('foo' <-> 'bar') & ('it' <-> 's')"
    assert tsquery_literal(["+++"]) is None
    # a gap between the fields: a phrase never spans two of them
    assert tsvector_literal(["a-b", "b c", "a"]) == "'a':2,8 'b':3,5 'c':6"


def test_search_needs_a_word_and_a_phrase_stays_in_one_field(postgres_dsn: str) -> None:
    with open_store(postgres_dsn) as store:
        assert isinstance(store, PostgresRuleStore)
        store.create({"id": "alpha", "description": "ends with omega", "body": "beta starts here"})
        assert [h.rule.id for h in store.search("beta starts")] == ["alpha"]
        assert store.search("omega beta") != []  # two terms: both present, anywhere
        assert store.search('"omega-beta"') == []  # one phrase across description and body
        assert store.search("+++") == []
        with pytest.raises(InvalidRule, match="at least one word"):
            store.search(' " ')


def test_round_trips_per_operation(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each operation costs in statements (each one round trip to the server), as docs/architecture.md says."""
    store = open_store(postgres_dsn)
    sent: list[str] = []
    execute = PostgresRuleStore._execute
    monkeypatch.setattr(PostgresRuleStore, "_execute", staticmethod(
        lambda conn, sql, params=None: sent.append(sql.split()[0]) or execute(conn, sql, params)))

    def verbs(operation: Callable[[], object]) -> list[str]:
        sent.clear()
        operation()
        return list(sent)

    assert verbs(lambda: store.create({"id": "a", "body": "one"})) == [
        "BEGIN", "UPDATE", "SELECT", "SELECT", "INSERT", "INSERT", "COMMIT"]
    assert verbs(lambda: store.update("a", 1, {"body": "two"})) == ["BEGIN", "UPDATE", "SELECT", "INSERT", "INSERT",
                                                                   "COMMIT"]
    assert verbs(store.generation) == verbs(store.snapshot) == verbs(lambda: store.get("a")) == ["SELECT"]
    assert verbs(lambda: store.changes_since(0)) == ["WITH"]
    store.close()
