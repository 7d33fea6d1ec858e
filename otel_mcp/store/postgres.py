"""The rule store on PostgreSQL (psycopg 3, ``psycopg_pool.ConnectionPool``): several server
processes (replicas) share one database.

Writers serialise on the row lock of the generation counter (the first statement of every write
transaction, see :mod:`otel_mcp.store.base`); a writer waits for it at most ``timeout`` seconds
(``lock_timeout``), then gets ``StoreBusy``, as on SQLite. Every committed write also sends
``NOTIFY otel_mcp_changes, '<generation>'`` (delivered at commit, never for a rolled-back one), for
whoever keeps caches or subscriptions coherent across replicas. Connections are autocommit; every read
is one statement, so it sees one committed state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import lru_cache, partial
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from otel_mcp.config import Settings
from otel_mcp.store.backends import redact
from otel_mcp.store.base import (
    BUMP_GENERATION_SQL,
    MAX_PAGE_SIZE,
    RULE_COLUMNS,
    RuleStoreBase,
    SearchHit,
    StoreBusy,
    StoreUnavailable,
    Transaction,
    WriteFeed,
    row_to_rule,
    search_terms,
)
from otel_mcp.store.model import Rule, RuleLimits
from otel_mcp.store.postgres_schema import migrate
from otel_mcp.store.postgres_search import tsquery_literal, tsvector_literal
from otel_mcp.store.write_feed import listen_for_writes

CHANGES_CHANNEL = "otel_mcp_changes"  # NOTIFY channel; the payload is the committed generation
APPLICATION_NAME = "otel-mcp"
# The generation bump sends the NOTIFY too: PostgreSQL delivers it at commit only, so in one round trip.
_BUMP_AND_NOTIFY = f"{BUMP_GENERATION_SQL}, pg_notify('{CHANGES_CHANNEL}', value::text)"
_SNIPPET_OPTIONS = "StartSel=[, StopSel=], MaxWords=12, MinWords=4, ShortWord=0, MaxFragments=1, FragmentDelimiter=..."


class _ConnectionLost(StoreUnavailable):
    """A pooled connection broke (a restarted database): a read may try again on a fresh one."""


def _search_vector(rule: Rule) -> str:
    return tsvector_literal((rule.id, rule.description, rule.body))


@lru_cache(maxsize=256)
def _sql(statement: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (none of our statements holds a ``?`` or ``%``)."""
    return statement.replace("?", "%s")


class PostgresRuleStore(RuleStoreBase):
    """Rules in a PostgreSQL database; safe to share between threads, processes and hosts.

    :param url: ``postgresql://user:password@host:port/database`` (libpq parameters in the query string)
    :param limits: body size and import count limits applied on write
    :param read_only: refuse every write
    :param pool_size: most connections this store opens
    :param timeout: seconds to wait for a connection, or for another writer's lock
    """

    BACKEND = "postgresql"
    TAG_MATCH = "EXISTS (SELECT 1 FROM jsonb_array_elements_text(rules.tags::jsonb) AS t(tag) WHERE t.tag = ?)"
    EXTRA_COLUMNS = (("search_vector", "CAST(? AS tsvector)", _search_vector),)  # SQLite's FTS5 has triggers

    def __init__(self, url: str, limits: RuleLimits = RuleLimits(), *, read_only: bool = False,
                 pool_size: int = Settings.db_pool_size, timeout: float = Settings.db_timeout_ms / 1000) -> None:
        self.url = url
        self.limits = limits
        self.read_only = read_only
        connect_args: dict[str, Any] = {
            "autocommit": True,
            "application_name": APPLICATION_NAME,
            "connect_timeout": max(1, math.ceil(timeout)),
            # after the URL's own options (a search_path, say), which a keyword argument would replace
            "options": f"{conninfo_to_dict(url).get('options') or ''} -c lock_timeout={int(timeout * 1000)}".strip(),
        }
        # One connection first: a wrong password or host fails here with libpq's own message, where a
        # pool would only retry in the background and time out.
        try:
            with psycopg.connect(url, **connect_args) as conn:
                migrate(conn)
                row = conn.execute("SELECT value FROM store_meta WHERE key = 'store_id'").fetchone()
        except psycopg.Error as exc:
            raise self._unavailable("cannot be opened", exc) from None
        self.store_id = int(row[0]) if row else 0
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=timeout, kwargs=connect_args,
                                    name="otel-mcp", open=False)
        self._pool.open()

    @property
    def location(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self._pool.close()

    def write_feed(self) -> WriteFeed:
        """Every committed write's ``NOTIFY``, heard on a connection of its own (``write_feed.py``)."""
        return partial(listen_for_writes, self.url, CHANGES_CHANNEL)

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        reason = " ".join(str(exc).replace(self.url, self.location).split()) or type(exc).__name__
        return StoreUnavailable(f"the database {self.location} {what} ({reason})")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a database that is down or unreachable is ``StoreUnavailable``."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:  # no connection could be made in time
            raise self._unavailable("cannot be reached", exc) from None
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None

    @staticmethod
    def _execute(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        """Every statement of the store runs here: the one place an instrumentor wraps (telemetry/store.py)."""
        return conn.execute(sql, params)

    def _lost(self, exc: psycopg.OperationalError) -> StoreUnavailable:
        """A connection broke: the idle ones probably died with it (a database restart), so replace them now
        rather than fail one request per pooled connection."""
        self._pool.check()
        reason = self._unavailable("cannot be reached", exc)
        return _ConnectionLost(str(reason))

    # -- reads -------------------------------------------------------------

    def _fetch(self, sql: str, params: Any, many: bool) -> Any:
        """One read statement, tried again once on a fresh connection when its connection had broken."""
        try:
            return self._fetch_on_one_connection(sql, params, many)
        except _ConnectionLost:
            return self._fetch_on_one_connection(sql, params, many)

    def _fetch_on_one_connection(self, sql: str, params: Any, many: bool) -> Any:
        with self._connection() as conn:
            cursor = self._execute(conn, _sql(sql), params)
            return cursor.fetchall() if many else cursor.fetchone()

    def _fetchone(self, sql: str, params: Any = ()) -> Any:
        return self._fetch(sql, params, many=False)

    def _fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        return self._fetch(sql, params, many=True)  # type: ignore[no-any-return]

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Full-text search (``tsvector`` + GIN, see ``postgres_search``) over id, description and body,
        best ``ts_rank`` first."""
        tsquery = tsquery_literal(search_terms(query))
        if tsquery is None:
            return []
        columns = ", ".join("r." + c.strip() for c in RULE_COLUMNS.split(","))
        rows = self._fetchall(
            f"SELECT {columns}, ts_headline('simple', r.body, q, '{_SNIPPET_OPTIONS}')"
            " FROM rules r, CAST(? AS tsquery) q WHERE r.search_vector @@ q"
            " ORDER BY ts_rank(r.search_vector, q) DESC, r.id LIMIT ?",
            (tsquery, max(1, min(limit, MAX_PAGE_SIZE))),
        )
        return [SearchHit(row_to_rule(r[:16]), r[16]) for r in rows]

    # -- writes ------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Transaction]:
        """One write transaction; waits for the generation row's lock (other writers, any process)."""
        self._check_writable()
        with ExitStack() as held:
            conn, generation = self._begin(held)
            tx = Transaction(lambda sql, params: self._execute(conn, _sql(sql), params), generation)
            try:
                yield tx
                if not tx.changed:
                    self._execute(conn, "ROLLBACK")  # its NOTIFY with it
                    return
            except psycopg.Error as exc:
                self._abandon(conn)
                raise self._unavailable("cannot be written; nothing was changed", exc) from None
            except BaseException:
                self._abandon(conn)
                raise
            try:
                self._execute(conn, "COMMIT")
            except psycopg.Error as exc:
                raise self._unavailable("did not confirm the write (see the rule's history for whether it"
                                        " was applied)", exc) from None

    def _begin(self, held: ExitStack) -> tuple[psycopg.Connection[Any], int]:
        """``BEGIN`` and the generation bump on a pooled connection, kept in ``held``; tried once more on a
        fresh connection when the first had broken (a restarted database): nothing was done on it yet."""
        for retry in (True, False):
            attempt = ExitStack()
            conn = attempt.enter_context(self._connection())
            try:
                self._execute(conn, "BEGIN")
                generation = int(self._execute(conn, _BUMP_AND_NOTIFY).fetchone()[0])  # type: ignore[index]
            except pg_errors.LockNotAvailable as exc:  # lock_timeout: another writer holds the generation row
                self._abandon(conn)
                attempt.close()
                raise StoreBusy(f"database is locked by another writer ({exc}); retry later") from None
            except psycopg.OperationalError as exc:
                attempt.close()
                lost = self._lost(exc)
                if retry:
                    continue
                raise lost from None
            except psycopg.Error as exc:
                self._abandon(conn)
                attempt.close()
                raise self._unavailable("cannot be written; nothing was changed", exc) from None
            held.enter_context(attempt)
            return conn, generation
        raise AssertionError("unreachable: the second attempt returns or raises")

    @classmethod
    def _abandon(cls, conn: psycopg.Connection[Any]) -> None:
        with suppress(psycopg.Error):
            cls._execute(conn, "ROLLBACK")
