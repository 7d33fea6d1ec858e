"""PostgreSQL schema and migrations, versioned like the SQLite file's (``otel_mcp.store.schema``).

``schema_version`` holds one row; migrations run in one transaction under an advisory lock, so
replicas starting together migrate once and a failed migration leaves the old schema. The tables
mirror SQLite's (JSON lists as text, ``enabled`` as an integer) so that both backends share their
SQL; ``search_vector`` (with its GIN index) replaces the FTS5 table. Append to ``MIGRATIONS``; never
edit one that has shipped.
"""

from __future__ import annotations

from typing import Any

from otel_mcp.store.schema import SchemaTooNew

MIGRATIONS: tuple[str, ...] = (
    # 1: rules with their search vector, their append-only history, the generation counter and the store id.
    """
    CREATE TABLE rules (
        id            TEXT PRIMARY KEY,
        version       BIGINT NOT NULL,
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
        created_at    DOUBLE PRECISION NOT NULL,
        updated_at    DOUBLE PRECISION NOT NULL,
        search_vector TSVECTOR NOT NULL DEFAULT ''
    );
    CREATE INDEX rules_search ON rules USING GIN (search_vector);
    CREATE TABLE rule_versions (
        rule_id    TEXT NOT NULL,
        version    BIGINT NOT NULL,
        operation  TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'rollback', 'import')),
        etag       TEXT NOT NULL,
        spec       TEXT NOT NULL,
        written_at DOUBLE PRECISION NOT NULL,
        generation BIGINT,
        PRIMARY KEY (rule_id, version)
    );
    CREATE INDEX rule_versions_by_generation ON rule_versions (generation);
    CREATE TABLE store_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO store_meta (key, value) VALUES ('generation', 0), ('store_id', floor(random() * 4294967296)::BIGINT);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x6F746D63  # pg_advisory_xact_lock key: "otmc"


def migrate(conn: Any) -> int:
    """Bring the database of ``conn`` (a psycopg connection in autocommit mode) to ``SCHEMA_VERSION``;
    return the version it started at. An up-to-date database is only read."""
    current = _read_version(conn)
    if current == SCHEMA_VERSION:
        return current
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        start = int(row[0]) if row else 0
        if start > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {start} is newer than this otel-mcp supports ({SCHEMA_VERSION});"
                " upgrade otel-mcp"
            )
        for number in range(start, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[number])
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        else:
            conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return start


def _read_version(conn: Any) -> int | None:
    if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else None
