"""Schema and migrations.

``schema_version`` holds one row; each migration moves the file one version
forward inside the same transaction that records the new number, so a crash
mid-migration leaves the old, consistent schema. Add a migration by appending
to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: rules, their append-only history, and the write generation counter.
    """
    CREATE TABLE rules (
        id            TEXT PRIMARY KEY,
        version       INTEGER NOT NULL,
        etag          TEXT NOT NULL,
        description   TEXT NOT NULL,
        body          TEXT NOT NULL,
        activation    TEXT NOT NULL
                      CHECK (activation IN ('always', 'auto', 'agent_requested', 'manual')),
        globs         TEXT NOT NULL,
        exclude_globs TEXT NOT NULL,
        tags          TEXT NOT NULL,
        priority      INTEGER NOT NULL,
        imports       TEXT NOT NULL,
        overrides     TEXT NOT NULL,
        settings      TEXT NOT NULL,
        enabled       INTEGER NOT NULL,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL
    );
    CREATE TABLE rule_versions (
        rule_id    TEXT NOT NULL,
        version    INTEGER NOT NULL,
        operation  TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'rollback', 'import')),
        etag       TEXT NOT NULL,
        spec       TEXT NOT NULL,
        written_at REAL NOT NULL,
        PRIMARY KEY (rule_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO store_meta (key, value) VALUES ('generation', 0);
    """,
    # 2: full-text search over id, description and body, kept in sync by triggers.
    """
    CREATE VIRTUAL TABLE rules_fts USING fts5(
        id, description, body, content='rules', content_rowid='rowid', tokenize='unicode61'
    );
    CREATE TRIGGER rules_fts_insert AFTER INSERT ON rules BEGIN
        INSERT INTO rules_fts (rowid, id, description, body)
        VALUES (new.rowid, new.id, new.description, new.body);
    END;
    CREATE TRIGGER rules_fts_delete AFTER DELETE ON rules BEGIN
        INSERT INTO rules_fts (rules_fts, rowid, id, description, body)
        VALUES ('delete', old.rowid, old.id, old.description, old.body);
    END;
    CREATE TRIGGER rules_fts_update AFTER UPDATE ON rules BEGIN
        INSERT INTO rules_fts (rules_fts, rowid, id, description, body)
        VALUES ('delete', old.rowid, old.id, old.description, old.body);
        INSERT INTO rules_fts (rowid, id, description, body)
        VALUES (new.rowid, new.id, new.description, new.body);
    END;
    INSERT INTO rules_fts (rules_fts) VALUES ('rebuild');
    """,
    # 3: a random identity for this database file, so caches keyed by generation can tell a
    # recreated database (whose generation restarts at 0) from the one they were filled from.
    """
    INSERT INTO store_meta (key, value) VALUES ('store_id', abs(random()) % 4294967296);
    """,
    # 4: the generation each history entry was written at, so readers can reload only what changed.
    """
    ALTER TABLE rule_versions ADD COLUMN generation INTEGER;
    CREATE INDEX rule_versions_by_generation ON rule_versions (generation);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to ``SCHEMA_VERSION``; return the version it started at.

    An up-to-date file is only read, so opening a store never waits for another process's writer.
    """
    current = _read_version(conn)
    if current == SCHEMA_VERSION:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        start = row[0] if row else 0
        if start > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {start} is newer than this otel-mcp supports ({SCHEMA_VERSION});"
                " upgrade otel-mcp"
            )
        for number in range(start, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(start)


def _read_version(conn: sqlite3.Connection) -> int | None:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not exists:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else None


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    statements, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
