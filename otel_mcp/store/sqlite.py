"""The rule store on SQLite (stdlib ``sqlite3``) in WAL mode: the embedded default backend.

SQLite allows one writer at a time: ``BEGIN IMMEDIATE`` takes the file's write lock before the
generation bump, so writers in this process or any other cannot interleave (see
:mod:`otel_mcp.store.base` for the model both backends share). Each thread keeps its own connection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from otel_mcp.config import Settings
from otel_mcp.store.base import (
    BUMP_GENERATION_SQL,
    MAX_PAGE_SIZE,
    RULE_COLUMNS,
    RuleStoreBase,
    SearchHit,
    StoreBusy,
    StoreUnavailable,
    Transaction,
    row_to_rule,
    search_terms,
)
from otel_mcp.store.model import RuleLimits
from otel_mcp.store.schema import migrate

DEFAULT_BUSY_TIMEOUT = Settings.db_timeout_ms / 1000  # seconds a writer waits for the lock before failing


class RuleStore(RuleStoreBase):
    """Rules in one SQLite file; safe to share between threads and processes.

    :param path: database file, created with its parent directory if missing
    :param limits: body size and import count limits applied on write
    :param busy_timeout: seconds to wait for another writer (default 5)
    """

    def __init__(
        self,
        path: str | Path,
        limits: RuleLimits = RuleLimits(),
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            migrate(self._conn()) if not read_only else self._conn()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"database {str(self.path)!r} is locked by another writer ({exc})") from None
            raise
        row = self._conn().execute("SELECT value FROM store_meta WHERE key = 'store_id'").fetchone()
        self.store_id = int(row[0]) if row else 0

    # -- connections -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection, set up; called once per thread (the place an instrumentor wraps)."""
        if self.read_only:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the tail.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        """One write transaction. The generation is bumped first so history rows can carry it;
        a transaction that recorded nothing (an unchanged import) is rolled back, leaving caches valid."""
        self._check_writable()
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"database is locked by another writer ({exc}); retry later") from None
            raise self._unwritable(exc) from None
        try:
            tx = Transaction(conn.execute, int(conn.execute(BUMP_GENERATION_SQL).fetchone()[0]))
            yield tx
            conn.execute("COMMIT" if tx.changed else "ROLLBACK")
        except sqlite3.DatabaseError as exc:
            self._abandon(conn)
            raise self._unwritable(exc) from None
        except BaseException:
            self._abandon(conn)
            raise

    @staticmethod
    def _abandon(conn: sqlite3.Connection) -> None:
        """Roll back what is left: after an I/O error SQLite may have rolled back already, and a second
        ROLLBACK ("cannot rollback - no transaction is active") would hide the real cause."""
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _unwritable(self, exc: sqlite3.DatabaseError) -> StoreUnavailable:
        return StoreUnavailable(f"the database {str(self.path)!r} cannot be written ({exc}); nothing was changed")

    @property
    def location(self) -> str:
        return str(self.path)

    def _fetchone(self, sql: str, params: Any = ()) -> Any:
        return self._conn().execute(sql, params).fetchone()

    def _fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        return self._conn().execute(sql, params).fetchall()

    BACKEND = "sqlite"
    TAG_MATCH = "EXISTS (SELECT 1 FROM json_each(rules.tags) WHERE value = ?)"

    # -- reads ------------------------------------------------------------

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Full-text search (FTS5, ``unicode61`` tokenizer) over id, description and body, best match first."""
        # NUL ends an FTS5 string early ("unterminated string"): search_terms treats it, like '"', as a separator.
        terms = search_terms(query)
        # Quote every term: user text is data, never FTS5 query syntax.
        match = " ".join(f'"{t}"' for t in terms)
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join('r.' + c.strip() for c in RULE_COLUMNS.split(','))},"
                " snippet(rules_fts, 2, '[', ']', '...', 12)"
                " FROM rules_fts JOIN rules r ON r.rowid = rules_fts.rowid"
                " WHERE rules_fts MATCH ? ORDER BY bm25(rules_fts) LIMIT ?",
                (match, max(1, min(limit, MAX_PAGE_SIZE))),
            )
            .fetchall()
        )
        return [SearchHit(row_to_rule(r[:16]), r[16]) for r in rows]
