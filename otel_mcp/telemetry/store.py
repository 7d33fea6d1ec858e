"""Rule-store instrumentation (SQLite and PostgreSQL): ``db.client.operation.duration`` and slow-query reports.

``opentelemetry-instrumentation-sqlite3`` traces cursors, but ``RuleStore``
runs its statements with ``Connection.execute``, which sqlite3 implements in C
without going through ``cursor()``, so none of them would be traced. This
instrumentor wraps ``RuleStore._connect`` (once per thread: the store keeps
the connection it returns) so that each thread's connection is used through
``MeteredConnection``, whose ``execute`` is the documented
equivalent (``cursor().execute(...)``): the sqlite3 instrumentation, when on,
then emits its CLIENT span for it, and we record

- ``db.client.operation.duration`` (semconv) by ``db.operation.name`` and
  ``db.collection.name``, parsed from the statement's verb and first table
  (cached per statement text; never the text itself);
- ``otel_mcp.db.slow_queries`` and a WARNING log over ``slow_query_ms``.

PostgreSQL: every statement of ``PostgresRuleStore`` runs through its ``_execute``, which this
instrumentor wraps (when ``otel_mcp.store.postgres`` is imported: a SQLite server never loads psycopg)
the same way: metered here, and traced by ``opentelemetry-instrumentation-psycopg`` (whose cursor
factory the pooled connections carry) under the same rule; a statement that is not to be traced runs
on a plain ``psycopg.Cursor``. ``db.system.name`` is ``postgresql`` there.

Spans: a request's reads (the generation probe of every composition, a rule
by id, a page of the list) are its hot path, and a sqlite3 span costs more
than the statement itself, so by default only writes and transactions
(``INSERT``/``UPDATE``/``DELETE``/``BEGIN``/DDL ...) go through the sqlite3
instrumentation; a read gets a span only when it is slow (over the slow-query
threshold: one CLIENT span with the measured start and end, created after the
fact). ``OTEL_MCP_DB_TRACE_READS=true`` traces every read as well. Every
statement is metered (``db.client.operation.duration`` through a
``BoundHistogram`` per statement text).

Usage
-----
.. code-block:: python

    from otel_mcp.telemetry.store import StoreInstrumentor

    StoreInstrumentor().instrument(meter_provider=mp, slow_query_seconds=0.05)

Configuration
-------------
``slow_query_seconds`` (kwarg, from the ``slow_query_ms`` setting); ``trace_reads`` (kwarg, default
``OTEL_MCP_DB_TRACE_READS``, false); standard ``OTEL_*`` otherwise.
``setup_telemetry`` turns the sqlite3 instrumentation on with a no-op meter provider: under the stable
database conventions it would record ``db.client.operation.duration`` too (for traced statements only,
with the query text), so this instrumentor is the one source of that metric.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Collection
from typing import Any, Final

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import Histogram, get_meter
from opentelemetry.semconv._incubating.attributes.db_attributes import DbSystemNameValues
from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_OPERATION_NAME,
    DB_QUERY_TEXT,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from otel_mcp.store import sqlite as store_sqlite
from otel_mcp.telemetry import names
from otel_mcp.telemetry.bound import BoundHistogram, bind
from otel_mcp.telemetry.package import _otel_mcp_instruments
from otel_mcp.telemetry.state import instrumentation_enabled
from otel_mcp.telemetry.version import __version__

logger = logging.getLogger(__name__)
slow_log = logging.getLogger("otel_mcp.perf.db")
SCHEMA_URL: Final = Schemas.V1_37_0.value
DEFAULT_SLOW_QUERY_SECONDS = 0.1  # 100 ms, until setup_telemetry sets the alert_slow_query_ms setting's value
DB_SYSTEM: Final = DbSystemNameValues.SQLITE.value
POSTGRESQL: Final = DbSystemNameValues.POSTGRESQL.value
POSTGRES_MODULE: Final = "otel_mcp.store.postgres"
MAX_STATEMENTS = 512  # distinct statement texts whose parse is cached
READ_VERBS: Final = frozenset({"SELECT", "WITH", "PRAGMA", "EXPLAIN", "VALUES"})
TRACE_READS_ENV: Final = "OTEL_MCP_DB_TRACE_READS"

_VERB = re.compile(r"^\s*(\w+)", re.ASCII)
_TABLE = re.compile(
    r"\b(?:FROM|INTO|UPDATE|TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE
)

SlowQueryObserver = Callable[[str, str | None, float], None]


def parse_statement(sql: str) -> tuple[str, str | None]:
    """``("SELECT", "rules")`` for ``SELECT ... FROM rules ...``: the verb and the first table named."""
    verb_match = _VERB.match(sql)
    verb = verb_match.group(1).upper() if verb_match else "OTHER"
    table_match = _TABLE.search(sql)
    return verb, (table_match.group(1) if table_match else None)


class Statement:
    """What one statement text costs to observe, worked out once: attributes, bound histogram, traced?"""

    __slots__ = ("attrs", "duration", "operation", "slow_attrs", "table", "traced")

    def __init__(self, attrs: dict[str, AttributeValue], duration: BoundHistogram, traced: bool) -> None:
        self.attrs = attrs
        self.duration = duration
        self.traced = traced
        self.operation = str(attrs[DB_OPERATION_NAME])
        table = attrs.get(DB_COLLECTION_NAME)
        self.table = str(table) if table is not None else None
        self.slow_attrs: dict[str, AttributeValue] = {k: v for k, v in attrs.items() if k != DB_SYSTEM_NAME}


class DbTelemetry:
    def __init__(self, meter_provider: Any = None, slow_query_seconds: float = DEFAULT_SLOW_QUERY_SECONDS,
                 tracer_provider: Any = None, trace_reads: bool | None = None) -> None:
        meter = get_meter(__name__, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.tracer = trace.get_tracer(__name__, __version__, tracer_provider, schema_url=SCHEMA_URL)
        if trace_reads is None:
            trace_reads = os.environ.get(TRACE_READS_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        self.trace_reads = trace_reads
        self.duration: Histogram = meter.create_histogram(
            DB_CLIENT_OPERATION_DURATION, unit="s", description="Duration of database client operations",
            explicit_bucket_boundaries_advisory=list(names.STEP_DURATION_BUCKETS),
        )
        self.slow_queries = meter.create_counter(
            names.DB_SLOW_QUERIES, unit="{query}", description="Statements slower than the slow-query threshold"
        )
        self.slow_query_seconds = slow_query_seconds
        self._by_system: dict[str, dict[str, Statement]] = {DB_SYSTEM: {}, POSTGRESQL: {}}
        self._statements = self._by_system[DB_SYSTEM]  # SQLite's, read directly on its hot path
        self.observers: list[SlowQueryObserver] = []
        self.enabled = True

    def statement(self, sql: str, system: str = DB_SYSTEM) -> Statement:
        """The cached facts of ``sql`` (parsed once per distinct text; never the text in metrics)."""
        statements = self._by_system[system]
        cached = statements.get(sql)
        if cached is not None:
            return cached
        verb, table = parse_statement(sql)
        attrs: dict[str, AttributeValue] = {DB_SYSTEM_NAME: system, DB_OPERATION_NAME: verb}
        if table is not None:
            attrs[DB_COLLECTION_NAME] = table
        stmt = Statement(attrs, bind(self.duration, attrs), self.trace_reads or verb not in READ_VERBS)
        if len(statements) < MAX_STATEMENTS:
            statements[sql] = stmt
        return stmt

    def observe(self, sql: str, seconds: float, error: BaseException | None, span_made: bool = True,
                system: str = DB_SYSTEM) -> None:
        """Meter one execution; ``span_made=False``: no contrib DB span covers it (a slow one then gets ours)."""
        stmt = self.statement(sql, system)
        if error is None:
            stmt.duration.record(seconds)
        else:
            self.duration.record(seconds, {**stmt.attrs, ERROR_TYPE: type(error).__qualname__})
        if seconds >= self.slow_query_seconds:
            self._slow(sql, stmt, seconds, span_made)

    def _slow(self, sql: str, stmt: Statement, seconds: float, span_made: bool) -> None:
        self.slow_queries.add(1, stmt.slow_attrs)
        if not span_made:
            end = time.time_ns()
            span = self.tracer.start_span(
                stmt.operation, kind=SpanKind.CLIENT, start_time=end - int(seconds * 1e9),
                attributes={DB_QUERY_TEXT: sql, **stmt.attrs},
            )
            span.end(end_time=end)
        slow_log.warning(
            "slow query: %s %s took %.1f ms", stmt.operation, stmt.table or "-", seconds * 1000,
            extra={"event": "slow_query", DB_OPERATION_NAME: stmt.operation, DB_COLLECTION_NAME: stmt.table,
                   "duration_ms": round(seconds * 1000, 3)},
        )
        for observer in self.observers:
            observer(stmt.operation, stmt.table, seconds)


class MeteredConnection:
    """A sqlite3 connection (possibly the sqlite3 instrumentation's proxy) whose ``execute`` is measured.

    A plain slotted class that delegates everything but ``execute`` (and the context manager protocol) to
    the connection: a ``wrapt.ObjectProxy``'s attribute lookups cost more on every statement.
    """

    __slots__ = ("__wrapped__", "_raw", "_telemetry", "_traced")

    def __init__(self, connection: Any, telemetry: DbTelemetry) -> None:
        self.__wrapped__ = connection
        self._telemetry = telemetry
        raw = connection
        while hasattr(raw, "__wrapped__"):  # the sqlite3 instrumentation's TracedConnectionProxy
            raw = raw.__wrapped__
        self._raw = raw
        self._traced = raw is not connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def __enter__(self) -> Any:
        return self.__wrapped__.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.__wrapped__.__exit__(*exc)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        telemetry = self._telemetry
        if not telemetry.enabled or not instrumentation_enabled():
            return self._raw.execute(sql, parameters)
        stmt = telemetry._statements.get(sql)  # the common case: a statement seen before
        traced = self._traced and (stmt if stmt is not None else telemetry.statement(sql)).traced
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            if traced:
                cursor = self.__wrapped__.cursor()
                cursor.execute(sql, parameters)
                return cursor
            return self._raw.execute(sql, parameters)
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            try:
                if error is None and stmt is not None and seconds < telemetry.slow_query_seconds:
                    stmt.duration.record(seconds)  # observe(), the common case inlined
                else:
                    telemetry.observe(sql, seconds, error, traced)
            except Exception:
                logger.debug("DB telemetry failed", exc_info=True)


def metered_postgres_execute(telemetry: DbTelemetry) -> Callable[..., Any]:
    """A wrapper of ``PostgresRuleStore._execute(conn, sql, params)``: ``MeteredConnection.execute`` for psycopg."""
    import psycopg

    def execute(wrapped: Any, _instance: Any, args: Any, kwargs: Any) -> Any:
        if not telemetry.enabled or not instrumentation_enabled():
            return wrapped(*args, **kwargs)
        return metered(*args, **kwargs)

    def metered(conn: Any, sql: str, params: Any = None) -> Any:
        stmt = telemetry.statement(sql, POSTGRESQL)
        # The psycopg instrumentation traces the cursors of the connection's own factory; psycopg.Cursor is plain.
        traced = stmt.traced and conn.cursor_factory is not psycopg.Cursor
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return (conn.execute if stmt.traced else psycopg.Cursor(conn).execute)(sql, params)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                telemetry.observe(sql, time.perf_counter() - start, error, traced, POSTGRESQL)
            except Exception:
                logger.debug("DB telemetry failed", exc_info=True)

    return execute


class StoreInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    _telemetry: DbTelemetry | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _otel_mcp_instruments

    @property
    def telemetry(self) -> DbTelemetry | None:
        return StoreInstrumentor._telemetry

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = DbTelemetry(
            kwargs.get("meter_provider"), float(kwargs.get("slow_query_seconds", DEFAULT_SLOW_QUERY_SECONDS)),
            kwargs.get("tracer_provider"), kwargs.get("trace_reads"),
        )
        StoreInstrumentor._telemetry = telemetry

        def connect_wrapper(wrapped: Any, _instance: Any, args: Any, kw: Any) -> Any:
            # Once per thread and store (``RuleStore._conn`` keeps the result): nothing on the statement path.
            conn = wrapped(*args, **kw)
            return conn if isinstance(conn, MeteredConnection) else MeteredConnection(conn, telemetry)

        wrapt.wrap_function_wrapper(store_sqlite, "RuleStore._connect", connect_wrapper)
        wrapt.when_imported(POSTGRES_MODULE)(_wrap_postgres)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(store_sqlite.RuleStore, "_connect")
        postgres = sys.modules.get(POSTGRES_MODULE)
        wrapper = vars(postgres.PostgresRuleStore)["_execute"] if postgres is not None else None
        if isinstance(wrapper, wrapt.ObjectProxy):  # unwrap() would put back the bare function, not the staticmethod
            postgres.PostgresRuleStore._execute = wrapper.__wrapped__  # type: ignore[union-attr]
        if StoreInstrumentor._telemetry is not None:
            StoreInstrumentor._telemetry.enabled = False  # connections already metered pass straight through
        StoreInstrumentor._telemetry = None


def _wrap_postgres(module: Any) -> None:
    """Once ``otel_mcp.store.postgres`` is imported (at once if it already is), while instrumented."""
    telemetry = StoreInstrumentor._telemetry
    if telemetry is None or isinstance(vars(module.PostgresRuleStore)["_execute"], wrapt.ObjectProxy):
        return
    wrapt.wrap_function_wrapper(module, "PostgresRuleStore._execute", metered_postgres_execute(telemetry))


__all__ = ["MeteredConnection", "StoreInstrumentor", "parse_statement"]
