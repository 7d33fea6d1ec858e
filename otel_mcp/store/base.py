"""The rule store's one interface and the logic both backends share (SQLite and PostgreSQL).

Concurrency model, the same on both: every write is one transaction that first bumps the store
``generation`` (``UPDATE store_meta ... RETURNING``), which serialises writers across threads and
processes (SQLite: ``BEGIN IMMEDIATE``, one writer per file; PostgreSQL: the row lock on the
generation row), then reads the current version, checks the caller's ``expected_version``, writes
the row and its history entry. The check and the write cannot interleave with another writer: no
update is lost. Readers see either the whole write or none of it.

``generation`` is a counter bumped by every write. Readers (the composition snapshot, the cache
keys) compare it to know, with one cheap query, whether anything changed, including writes made by
other processes (other replicas on PostgreSQL).

A backend provides its connections (``_fetchone``/``_fetchall`` for reads, each one statement, so one
consistent state without a transaction; ``_write`` for a write transaction) and its full-text
``search``; the SQL here is written with ``?`` placeholders and the backend's execute function adapts
them.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn, Self

from otel_mcp.errors import InvalidRule, RuleError, RuleExists, RuleNotFound, VersionConflict
from otel_mcp.store.model import SPEC_FIELDS, Activation, Rule, RuleLimits, RuleSpec, build_spec, merge_spec

MAX_PAGE_SIZE = 200
MAX_VERSION = 2**63 - 1  # the largest 64-bit INTEGER / BIGINT
RULE_COLUMNS = (
    "id, version, etag, description, body, activation, globs, exclude_globs, tags, priority,"
    " imports, overrides, settings, enabled, created_at, updated_at"
)
GENERATION_SQL = "SELECT value FROM store_meta WHERE key = 'generation'"
_QUALIFIED_COLUMNS = ", ".join("r." + c.strip() for c in RULE_COLUMNS.split(","))
# One statement each, so both engines read one state without a transaction; always one row at least (the
# generation), with the rule columns NULL when there is no rule.
SNAPSHOT_SQL = (
    f"SELECT m.value, {_QUALIFIED_COLUMNS} FROM store_meta m LEFT JOIN rules r ON 1 = 1"
    " WHERE m.key = 'generation' ORDER BY r.id"
)
CHANGES_SQL = (  # the rules written after a generation: their row now, or NULLs for a deleted one
    "WITH changed AS (SELECT DISTINCT rule_id FROM rule_versions WHERE generation > ?)"
    f" SELECT m.value, c.rule_id, {_QUALIFIED_COLUMNS} FROM store_meta m"
    " LEFT JOIN changed c ON 1 = 1 LEFT JOIN rules r ON r.id = c.rule_id WHERE m.key = 'generation'"
)
BUMP_GENERATION_SQL = "UPDATE store_meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
READ_ONLY_MESSAGE = "the server is in read-only mode; writes are disabled"

Execute = Callable[[str, Any], Any]  # (sql with ? placeholders, parameters) -> a cursor
OnWrite = Callable[[int | None], Awaitable[None]]  # told a committed write's generation (None: look yourself)
OnLost = Callable[[str], None]  # told why the feed stopped hearing writes (it reconnects by itself)
WriteFeed = Callable[[OnWrite, OnLost], Awaitable[NoReturn]]  # calls back for every write, until cancelled


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


class StoreUnavailable(RuleError):
    """The database cannot be reached or written (down, disk full, read-only): nothing was changed."""


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
class Transaction:
    """An open write transaction: ``execute`` runs a statement in it."""

    execute: Execute
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


def row_to_rule(row: Any) -> Rule:
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


def rule_values(rule: Rule) -> tuple[Any, ...]:
    """``rule`` as the values of ``RULE_COLUMNS``, in order."""
    return (
        rule.id, rule.version, rule.etag, rule.description, rule.body, rule.activation.value,
        json.dumps(list(rule.globs)), json.dumps(list(rule.exclude_globs)), json.dumps(list(rule.tags)),
        rule.priority, json.dumps(list(rule.imports)), json.dumps(list(rule.overrides)),
        json.dumps(rule.settings, sort_keys=True), int(rule.enabled), rule.created_at, rule.updated_at,
    )


def spec_from_json(text: str) -> RuleSpec:
    data = json.loads(text)
    # History holds specs that were valid when written; limits may have shrunk since: not re-validated.
    data["activation"] = Activation(data.get("activation", Activation.MANUAL))
    for name in ("globs", "exclude_globs", "tags", "imports", "overrides"):
        data[name] = tuple(data.get(name) or ())
    return RuleSpec(**{k: v for k, v in data.items() if k in SPEC_FIELDS})


def search_terms(query: str) -> list[str]:
    """The words of a search query (``"`` and NUL are separators); refuses a query without any."""
    terms = [t for t in query.replace('"', " ").replace("\x00", " ").split() if t]
    if not terms:
        raise InvalidRule("search query must contain at least one word")
    return terms


class RuleStoreBase(ABC):
    """Rules in a database shared by threads and processes: one interface, one backend per engine.

    :param limits: body size and import count limits applied on write
    :param read_only: refuse every write
    """

    #: the engine, as OpenTelemetry's ``db.system.name`` says it
    BACKEND: str
    #: SQL that is true when the rule's JSON ``tags`` array holds the parameter
    TAG_MATCH: str
    #: what a backend stores in ``rules`` beside ``RULE_COLUMNS``: (column, placeholder, value of a rule)
    EXTRA_COLUMNS: tuple[tuple[str, str, Callable[[Rule], Any]], ...] = ()
    limits: RuleLimits
    read_only: bool
    store_id: int

    # -- what a backend provides ---------------------------------------------

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the rules are, for messages and logs (a file path, or a URL without its password)."""

    @abstractmethod
    def _fetchone(self, sql: str, params: Any = ()) -> Any: ...

    @abstractmethod
    def _fetchall(self, sql: str, params: Any = ()) -> list[Any]: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[Transaction]:
        """One write transaction with the generation already bumped; committed only when ``changed``."""

    @abstractmethod
    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Full-text search over id, description and body, best match first."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_feed(self) -> WriteFeed | None:
        """Where the database pushes every committed write, this process's and other processes' alike; ``None``
        when it cannot (SQLite): then only looking at ``generation`` now and then finds other processes' writes."""
        return None

    # -- reads -------------------------------------------------------------

    def generation(self) -> int:
        """A number that changes whenever any rule changes (in any process)."""
        return int(self._fetchone(GENERATION_SQL)[0])

    def get(self, rule_id: str, version: int | None = None) -> Rule:
        if version is None:
            row = self._fetchone(f"SELECT {RULE_COLUMNS} FROM rules WHERE id = ?", (rule_id,))
            if row is None:
                raise RuleNotFound(rule_id)
            return row_to_rule(row)
        entry = self._history_entry(rule_id, version)
        if entry.operation == "delete":
            raise RuleNotFound(rule_id, version)
        created = self._fetchone("SELECT MIN(written_at) FROM rule_versions WHERE rule_id = ?", (rule_id,))[0]
        return Rule(
            **entry.spec.__dict__, version=entry.version, etag=entry.etag, created_at=created,
            updated_at=entry.written_at,
        )

    def snapshot(self) -> tuple[int, list[Rule]]:
        """All rules and the generation they belong to, read by one statement (one consistent state)."""
        rows = self._fetchall(SNAPSHOT_SQL)
        return int(rows[0][0]), [row_to_rule(r[1:]) for r in rows if r[1] is not None]

    def changes_since(self, generation: int) -> Changes:
        """The rules written (as they are now) or deleted after ``generation``, read by one statement.

        Lets a reader holding the rules of ``generation`` catch up without reloading everything.
        """
        rows = self._fetchall(CHANGES_SQL, (generation,))
        written = [row_to_rule(r[2:]) for r in rows if r[2] is not None]
        deleted = {r[1] for r in rows if r[1] is not None and r[2] is None}
        return Changes(int(rows[0][0]), written, deleted)

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
            where.append(self.TAG_MATCH)
            args.append(tag)
        if after is not None:
            where.append("id > ?")
            args.append(after)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self._fetchall(f"SELECT {RULE_COLUMNS} FROM rules {clause} ORDER BY id LIMIT ?", (*args, limit + 1))
        rules = [row_to_rule(r) for r in rows[:limit]]
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
        return int(self._fetchone("SELECT COUNT(*) FROM rules")[0])

    def history(self, rule_id: str, limit: int = 50) -> list[HistoryEntry]:
        rows = self._fetchall(
            "SELECT rule_id, version, operation, etag, written_at, spec FROM rule_versions"
            " WHERE rule_id = ? ORDER BY version DESC LIMIT ?",
            (rule_id, max(1, min(limit, MAX_PAGE_SIZE))),
        )
        if not rows:
            raise RuleNotFound(rule_id)
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], spec_from_json(r[5])) for r in rows]

    def full_history(self) -> list[HistoryEntry]:
        """Every history entry of every rule, by rule and version: what ``otel-mcp migrate`` copies."""
        rows = self._fetchall(
            "SELECT rule_id, version, operation, etag, written_at, spec FROM rule_versions ORDER BY rule_id, version"
        )
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], spec_from_json(r[5])) for r in rows]

    def _history_entry(self, rule_id: str, version: int) -> HistoryEntry:
        if not 1 <= version <= MAX_VERSION:  # the database cannot even be asked: it cannot exist
            raise RuleNotFound(rule_id, version)
        row = self._fetchone(
            "SELECT rule_id, version, operation, etag, written_at, spec FROM rule_versions"
            " WHERE rule_id = ? AND version = ?",
            (rule_id, version),
        )
        if row is None:
            raise RuleNotFound(rule_id, version)
        return HistoryEntry(row[0], row[1], row[2], row[3], row[4], spec_from_json(row[5]))

    # -- writes ------------------------------------------------------------

    def create(self, spec: RuleSpec | dict[str, Any]) -> Rule:
        spec = self._validated(spec)
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM rules WHERE id = ?", (spec.id,)).fetchone():
                raise RuleExists(spec.id)
            return self._put(tx, spec, self._next_version(tx, spec.id), "create", created_at=None)

    def update(self, rule_id: str, expected_version: int, changes: dict[str, Any]) -> Rule:
        with self._write() as tx:
            current = self._current(tx, rule_id, expected_version)
            spec = merge_spec(current.spec, changes, self.limits)
            return self._put(tx, spec, current.version + 1, "update", created_at=current.created_at)

    def delete(self, rule_id: str, expected_version: int) -> int:
        """Delete a rule; its history stays. Returns the version recorded for the deletion."""
        with self._write() as tx:
            current = self._current(tx, rule_id, expected_version)
            tx.execute("DELETE FROM rules WHERE id = ?", (rule_id,))
            version = current.version + 1
            self._record(tx, current.spec, version, "delete", time.time())
            return version

    def rollback(self, rule_id: str, to_version: int, expected_version: int | None = None) -> Rule:
        """Write a new version whose content is that of ``to_version`` (also revives a deleted rule)."""
        with self._write() as tx:
            target = self._history_entry(rule_id, to_version)
            if target.operation == "delete":
                raise InvalidRule(f"version {to_version} of rule {rule_id!r} is a deletion; pick an earlier one")
            row = tx.execute("SELECT version, created_at FROM rules WHERE id = ?", (rule_id,)).fetchone()
            if row is not None and expected_version is not None and row[0] != expected_version:
                raise VersionConflict(rule_id, expected_version, row[0])
            spec = build_spec(target.spec.to_dict(), self.limits)
            created = row[1] if row is not None else None
            return self._put(tx, spec, self._next_version(tx, rule_id), "rollback", created_at=created)

    def upsert(self, spec: RuleSpec | dict[str, Any], operation: str = "import") -> tuple[Rule, str]:
        """Create or replace a rule unconditionally; a no-op when the content is unchanged.

        Returns the rule and what happened: ``created``, ``updated`` or ``unchanged``.
        """
        spec = self._validated(spec)
        with self._write() as tx:
            row = tx.execute(f"SELECT {RULE_COLUMNS} FROM rules WHERE id = ?", (spec.id,)).fetchone()
            if row is not None:
                current = row_to_rule(row)
                if current.etag == spec.content_hash():
                    return current, "unchanged"
                return self._put(tx, spec, current.version + 1, operation, current.created_at), "updated"
            return self._put(tx, spec, self._next_version(tx, spec.id), operation, None), "created"

    def restore_history(self, entries: list[HistoryEntry]) -> None:
        """Write history entries as they are, by rule and version (``otel-mcp migrate``), and each rule's
        current row from its last entry, in one transaction; refuses a store that holds any history."""
        with self._write() as tx:
            if tx.execute("SELECT 1 FROM rule_versions LIMIT 1", ()).fetchone():
                raise InvalidRule(f"the target store {self.location} is not empty; migrate into an empty one")
            last: dict[str, tuple[HistoryEntry, float]] = {}
            for entry in entries:
                previous = last.get(entry.rule_id)
                # A rule's created_at is when its current life began: its first entry or the one after a delete.
                alive_since = previous[1] if previous and previous[0].operation != "delete" else entry.written_at
                last[entry.rule_id] = (entry, alive_since)
                self._record(tx, entry.spec, entry.version, entry.operation, entry.written_at, entry.etag)
            for entry, created_at in last.values():
                if entry.operation != "delete":
                    rule = Rule(**entry.spec.__dict__, version=entry.version, etag=entry.etag,
                                created_at=created_at, updated_at=entry.written_at)
                    tx.execute(self._rule_statements[0], self._row(rule))

    def _validated(self, spec: RuleSpec | dict[str, Any]) -> RuleSpec:
        return build_spec(spec.to_dict() if isinstance(spec, RuleSpec) else spec, self.limits)

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidRule(READ_ONLY_MESSAGE)

    @staticmethod
    def _current(tx: Transaction, rule_id: str, expected_version: int) -> Rule:
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise InvalidRule("expected_version must be an integer")
        row = tx.execute(f"SELECT {RULE_COLUMNS} FROM rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            raise RuleNotFound(rule_id)
        current = row_to_rule(row)
        if current.version != expected_version:
            raise VersionConflict(rule_id, expected_version, current.version)
        return current

    @staticmethod
    def _next_version(tx: Transaction, rule_id: str) -> int:
        # Continue after any history (a deleted and re-created rule keeps counting up).
        row = tx.execute("SELECT MAX(version) FROM rule_versions WHERE rule_id = ?", (rule_id,)).fetchone()
        return int(row[0] or 0) + 1

    def _put(self, tx: Transaction, spec: RuleSpec, version: int, operation: str, created_at: float | None) -> Rule:
        now = time.time()
        rule = Rule(
            **spec.__dict__,
            version=version,
            etag=spec.content_hash(),
            created_at=created_at if created_at is not None else now,
            updated_at=now,
        )
        tx.execute(self._rule_statements[1], self._row(rule))
        self._record(tx, spec, version, operation, now)
        return rule

    @cached_property
    def _rule_statements(self) -> tuple[str, str]:
        """``INSERT`` of a rule row, and the same replacing a row of that id but its ``created_at``."""
        names = [c.strip() for c in RULE_COLUMNS.split(",")] + [name for name, _, _ in self.EXTRA_COLUMNS]
        marks = ["?"] * (len(names) - len(self.EXTRA_COLUMNS)) + [mark for _, mark, _ in self.EXTRA_COLUMNS]
        insert = f"INSERT INTO rules ({', '.join(names)}) VALUES ({', '.join(marks)})"
        replaced = ", ".join(f"{n}=excluded.{n}" for n in names if n not in ("id", "created_at"))
        return insert, f"{insert} ON CONFLICT(id) DO UPDATE SET {replaced}"

    def _row(self, rule: Rule) -> tuple[Any, ...]:
        return rule_values(rule) + tuple(value(rule) for _, _, value in self.EXTRA_COLUMNS)

    @staticmethod
    def _record(tx: Transaction, spec: RuleSpec, version: int, operation: str, at: float,
                etag: str | None = None) -> None:
        """Append ``spec`` to the history; ``etag``: the one it was written with (a copy), else its hash now."""
        tx.execute(
            "INSERT INTO rule_versions (rule_id, version, operation, etag, spec, written_at, generation)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                spec.id, version, operation, etag or spec.content_hash(),
                json.dumps(spec.to_dict(), sort_keys=True), at, tx.generation,
            ),
        )
        tx.changed = True
