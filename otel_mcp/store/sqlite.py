"""The rule store: SQLite (stdlib ``sqlite3``) in WAL mode.

Concurrency model: every write is one ``BEGIN IMMEDIATE`` transaction that
reads the current version, checks the caller's ``expected_version``, writes the
row and its history entry and bumps the store ``generation``. SQLite allows one
writer at a time, so the check and the write cannot interleave with another
writer, in this process or any other: no update is lost. Readers see either
the whole write or none of it.

``generation`` is a counter bumped by every write. Readers (the composition
snapshot, the cache keys) compare it to know, with one cheap query, whether
anything changed, including writes made by other processes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_mcp.errors import InvalidRule, RuleError, RuleExists, RuleNotFound, VersionConflict
from otel_mcp.store.model import SPEC_FIELDS, Activation, Rule, RuleLimits, RuleSpec, build_spec, merge_spec
from otel_mcp.store.schema import migrate

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for the lock before failing
MAX_PAGE_SIZE = 200
MAX_VERSION = 2**63 - 1  # SQLite's largest INTEGER
_RULE_COLUMNS = (
    "id, version, etag, description, body, activation, globs, exclude_globs, tags, priority,"
    " imports, overrides, settings, enabled, created_at, updated_at"
)


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


class StoreUnavailable(RuleError):
    """The database cannot be written (disk full, I/O error, read-only file): nothing was changed."""


@dataclass(frozen=True)
class HistoryEntry:
    rule_id: str
    version: int
    operation: str
    etag: str
    written_at: float
    spec: RuleSpec

    def to_dict(self, *, with_body: bool = False) -> dict[str, Any]:
        spec = self.spec.to_dict()
        if not with_body:
            spec.pop("body")
        return {
            "rule_id": self.rule_id,
            "version": self.version,
            "operation": self.operation,
            "etag": self.etag,
            "written_at": self.written_at,
            "rule": spec,
        }


@dataclass
class _Transaction:
    conn: sqlite3.Connection
    generation: int  # what the store's generation becomes when this transaction commits
    changed: bool = False


@dataclass(frozen=True)
class Changes:
    """What happened between two generations: rules written (current state) and rules deleted."""

    generation: int
    written: list[Rule]
    deleted: set[str]


@dataclass(frozen=True)
class SearchHit:
    rule: Rule
    snippet: str


def _row_to_rule(row: sqlite3.Row | tuple[Any, ...]) -> Rule:
    return Rule(
        id=row[0],
        version=row[1],
        etag=row[2],
        description=row[3],
        body=row[4],
        activation=Activation(row[5]),
        globs=tuple(json.loads(row[6])),
        exclude_globs=tuple(json.loads(row[7])),
        tags=tuple(json.loads(row[8])),
        priority=row[9],
        imports=tuple(json.loads(row[10])),
        overrides=tuple(json.loads(row[11])),
        settings=json.loads(row[12]),
        enabled=bool(row[13]),
        created_at=row[14],
        updated_at=row[15],
    )


def _spec_from_json(text: str) -> RuleSpec:
    data = json.loads(text)
    # History holds specs that were valid when written; limits may have shrunk since: not re-validated.
    data["activation"] = Activation(data.get("activation", Activation.MANUAL))
    for name in ("globs", "exclude_globs", "tags", "imports", "overrides"):
        data[name] = tuple(data.get(name) or ())
    return RuleSpec(**{k: v for k, v in data.items() if k in SPEC_FIELDS})


class RuleStore:
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
    def _write(self) -> Iterator[_Transaction]:
        """One write transaction. The generation is bumped first so history rows can carry it;
        a transaction that recorded nothing (an unchanged import) is rolled back, leaving caches valid."""
        if self.read_only:
            raise InvalidRule("the server is in read-only mode; writes are disabled")
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"database is locked by another writer ({exc}); retry later") from None
            raise self._unwritable(exc) from None
        try:
            row = conn.execute(
                "UPDATE store_meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
            ).fetchone()
            tx = _Transaction(conn, int(row[0]))
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

    # -- reads -------------------------------------------------------------

    def generation(self) -> int:
        """A number that changes whenever any rule changes (in any process)."""
        row = self._conn().execute("SELECT value FROM store_meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        if version is None:
            row = self._conn().execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                raise RuleNotFound(rule_id)
            return _row_to_rule(row)
        entry = self._history_entry(rule_id, version)
        if entry.operation == "delete":
            raise RuleNotFound(rule_id, version)
        created = self._conn().execute(
            "SELECT MIN(written_at) FROM rule_versions WHERE rule_id = ?", (rule_id,)
        ).fetchone()[0]
        return Rule(
            **entry.spec.__dict__,
            version=entry.version,
            etag=entry.etag,
            created_at=created,
            updated_at=entry.written_at,
        )

    def snapshot(self) -> tuple[int, list[Rule]]:
        """All rules and the generation they belong to, read in one transaction."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            generation = conn.execute("SELECT value FROM store_meta WHERE key = 'generation'").fetchone()[0]
            rows = conn.execute(f"SELECT {_RULE_COLUMNS} FROM rules ORDER BY id").fetchall()
        finally:
            conn.execute("COMMIT")
        return int(generation), [_row_to_rule(r) for r in rows]

    def changes_since(self, generation: int) -> Changes:
        """The rules written or deleted after ``generation``, read in one transaction.

        Lets a reader holding the rules of ``generation`` catch up without reloading everything.
        """
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            current = conn.execute("SELECT value FROM store_meta WHERE key = 'generation'").fetchone()[0]
            ids = [r[0] for r in conn.execute(
                "SELECT DISTINCT rule_id FROM rule_versions WHERE generation > ?", (generation,)
            )]
            written: list[Rule] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT {_RULE_COLUMNS} FROM rules WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                written.extend(_row_to_rule(r) for r in rows)
        finally:
            conn.execute("COMMIT")
        present = {r.id for r in written}
        return Changes(int(current), written, {i for i in ids if i not in present})

    def list_page(
        self,
        *,
        activation: str | None = None,
        tag: str | None = None,
        enabled: bool | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Rule], str | None]:
        """A page of rules ordered by id, and the cursor for the next page (``None`` at the end)."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        where: list[str] = []
        args: list[object] = []
        if activation is not None:
            where.append("activation = ?")
            args.append(Activation(activation).value)
        if enabled is not None:
            where.append("enabled = ?")
            args.append(int(enabled))
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(rules.tags) WHERE value = ?)")
            args.append(tag)
        if after is not None:
            where.append("id > ?")
            args.append(after)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = (
            self._conn()
            .execute(f"SELECT {_RULE_COLUMNS} FROM rules {clause} ORDER BY id LIMIT ?", (*args, limit + 1))
            .fetchall()
        )
        rules = [_row_to_rule(r) for r in rows[:limit]]
        return rules, (rules[-1].id if len(rows) > limit else None)

    def over_limits(self) -> list[tuple[str, str]]:
        """The stored rules the current limits would refuse, with the reason: (id, reason), by id."""
        over = []
        for rule in self.snapshot()[1]:
            try:
                self._validated(rule.spec)
            except InvalidRule as exc:
                over.append((rule.id, str(exc)))
        return over

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM rules").fetchone()[0])

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Full-text search (FTS5) over id, description and body, best match first."""
        # NUL ends an FTS5 string early ("unterminated string"): treat it, like '"', as a separator.
        terms = [t for t in query.replace('"', " ").replace("\x00", " ").split() if t]
        if not terms:
            raise InvalidRule("search query must contain at least one word")
        # Quote every term: user text is data, never FTS5 query syntax.
        match = " ".join(f'"{t}"' for t in terms)
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join('r.' + c.strip() for c in _RULE_COLUMNS.split(','))},"
                " snippet(rules_fts, 2, '[', ']', '...', 12)"
                " FROM rules_fts JOIN rules r ON r.rowid = rules_fts.rowid"
                " WHERE rules_fts MATCH ? ORDER BY bm25(rules_fts) LIMIT ?",
                (match, max(1, min(limit, MAX_PAGE_SIZE))),
            )
            .fetchall()
        )
        return [SearchHit(_row_to_rule(r[:16]), r[16]) for r in rows]

    def history(self, rule_id: str, limit: int = 50) -> list[HistoryEntry]:
        rows = (
            self._conn()
            .execute(
                "SELECT rule_id, version, operation, etag, written_at, spec FROM rule_versions"
                " WHERE rule_id = ? ORDER BY version DESC LIMIT ?",
                (rule_id, max(1, min(limit, MAX_PAGE_SIZE))),
            )
            .fetchall()
        )
        if not rows:
            raise RuleNotFound(rule_id)
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], _spec_from_json(r[5])) for r in rows]

    def _history_entry(self, rule_id: str, version: int) -> HistoryEntry:
        if not 1 <= version <= MAX_VERSION:  # SQLite cannot even be asked (OverflowError): it cannot exist
            raise RuleNotFound(rule_id, version)
        row = (
            self._conn()
            .execute(
                "SELECT rule_id, version, operation, etag, written_at, spec FROM rule_versions"
                " WHERE rule_id = ? AND version = ?",
                (rule_id, version),
            )
            .fetchone()
        )
        if row is None:
            raise RuleNotFound(rule_id, version)
        return HistoryEntry(row[0], row[1], row[2], row[3], row[4], _spec_from_json(row[5]))

    # -- writes ------------------------------------------------------------

    def create(self, spec: RuleSpec | dict[str, Any]) -> Rule:
        spec = self._validated(spec)
        with self._write() as tx:
            if tx.conn.execute("SELECT 1 FROM rules WHERE id = ?", (spec.id,)).fetchone():
                raise RuleExists(spec.id)
            return self._put(tx, spec, self._next_version(tx.conn, spec.id), "create", created_at=None)

    def update(self, rule_id: str, expected_version: int, changes: dict[str, Any]) -> Rule:
        with self._write() as tx:
            current = self._current(tx.conn, rule_id, expected_version)
            spec = merge_spec(current.spec, changes, self.limits)
            return self._put(tx, spec, current.version + 1, "update", created_at=current.created_at)

    def delete(self, rule_id: str, expected_version: int) -> int:
        """Delete a rule; its history stays. Returns the version recorded for the deletion."""
        with self._write() as tx:
            current = self._current(tx.conn, rule_id, expected_version)
            tx.conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,))
            version = current.version + 1
            self._record(tx, current.spec, version, "delete", time.time())
            return version

    def rollback(self, rule_id: str, to_version: int, expected_version: int | None = None) -> Rule:
        """Write a new version whose content is that of ``to_version`` (also revives a deleted rule)."""
        with self._write() as tx:
            target = self._history_entry(rule_id, to_version)
            if target.operation == "delete":
                raise InvalidRule(f"version {to_version} of rule {rule_id!r} is a deletion; pick an earlier one")
            row = tx.conn.execute("SELECT version, created_at FROM rules WHERE id = ?", (rule_id,)).fetchone()
            if row is not None and expected_version is not None and row[0] != expected_version:
                raise VersionConflict(rule_id, expected_version, row[0])
            spec = build_spec(target.spec.to_dict(), self.limits)
            created = row[1] if row is not None else None
            return self._put(tx, spec, self._next_version(tx.conn, rule_id), "rollback", created_at=created)

    def upsert(self, spec: RuleSpec | dict[str, Any], operation: str = "import") -> tuple[Rule, str]:
        """Create or replace a rule unconditionally; a no-op when the content is unchanged.

        Returns the rule and what happened: ``created``, ``updated`` or ``unchanged``.
        """
        spec = self._validated(spec)
        with self._write() as tx:
            row = tx.conn.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE id = ?", (spec.id,)).fetchone()
            if row is not None:
                current = _row_to_rule(row)
                if current.etag == spec.content_hash():
                    return current, "unchanged"
                return self._put(tx, spec, current.version + 1, operation, current.created_at), "updated"
            return self._put(tx, spec, self._next_version(tx.conn, spec.id), operation, None), "created"

    def _validated(self, spec: RuleSpec | dict[str, Any]) -> RuleSpec:
        return build_spec(spec.to_dict() if isinstance(spec, RuleSpec) else spec, self.limits)

    def _current(self, conn: sqlite3.Connection, rule_id: str, expected_version: int) -> Rule:
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise InvalidRule("expected_version must be an integer")
        row = conn.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            raise RuleNotFound(rule_id)
        current = _row_to_rule(row)
        if current.version != expected_version:
            raise VersionConflict(rule_id, expected_version, current.version)
        return current

    @staticmethod
    def _next_version(conn: sqlite3.Connection, rule_id: str) -> int:
        # Continue after any history (a deleted and re-created rule keeps counting up).
        row = conn.execute("SELECT MAX(version) FROM rule_versions WHERE rule_id = ?", (rule_id,)).fetchone()
        return int(row[0] or 0) + 1

    def _put(self, tx: _Transaction, spec: RuleSpec, version: int, operation: str, created_at: float | None) -> Rule:
        now = time.time()
        rule = Rule(
            **spec.__dict__,
            version=version,
            etag=spec.content_hash(),
            created_at=created_at if created_at is not None else now,
            updated_at=now,
        )
        tx.conn.execute(
            f"INSERT INTO rules ({_RULE_COLUMNS}) VALUES ({', '.join('?' * 16)})"
            " ON CONFLICT(id) DO UPDATE SET version=excluded.version, etag=excluded.etag,"
            " description=excluded.description, body=excluded.body, activation=excluded.activation,"
            " globs=excluded.globs, exclude_globs=excluded.exclude_globs, tags=excluded.tags,"
            " priority=excluded.priority, imports=excluded.imports, overrides=excluded.overrides,"
            " settings=excluded.settings, enabled=excluded.enabled, updated_at=excluded.updated_at",
            (
                rule.id,
                rule.version,
                rule.etag,
                rule.description,
                rule.body,
                rule.activation.value,
                json.dumps(list(rule.globs)),
                json.dumps(list(rule.exclude_globs)),
                json.dumps(list(rule.tags)),
                rule.priority,
                json.dumps(list(rule.imports)),
                json.dumps(list(rule.overrides)),
                json.dumps(rule.settings, sort_keys=True),
                int(rule.enabled),
                rule.created_at,
                rule.updated_at,
            ),
        )
        self._record(tx, spec, version, operation, now)
        return rule

    @staticmethod
    def _record(tx: _Transaction, spec: RuleSpec, version: int, operation: str, at: float) -> None:
        tx.conn.execute(
            "INSERT INTO rule_versions (rule_id, version, operation, etag, spec, written_at, generation)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                spec.id, version, operation, spec.content_hash(), json.dumps(spec.to_dict(), sort_keys=True), at,
                tx.generation,
            ),
        )
        tx.changed = True
