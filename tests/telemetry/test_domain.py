"""Composition, store, cache, resources, perf log, disabled SDK, and the docs table."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from psycopg.conninfo import conninfo_to_dict
from telemetry_support import NO_EXPORT, Otel, uninstrument_all

from otel_mcp.compose.engine import ComposeRequest, Composition
from otel_mcp.compose.service import ComposeService
from otel_mcp.errors import CompositionError
from otel_mcp.store import RuleStoreBase
from otel_mcp.store.backends import open_store
from otel_mcp.telemetry import docs, names
from otel_mcp.telemetry.perflog import PerfLog
from otel_mcp.telemetry.setup import setup_telemetry
from otel_mcp.telemetry.store import parse_statement


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, Composition] = {}

    def get(self, key: str) -> Composition | None:
        return self.data.get(key)

    def put(self, key: str, composition: Composition) -> None:
        self.data[key] = composition


def _store(otel: Otel, db: Path | str | None = None) -> RuleStoreBase:
    store = open_store(db or otel.tmp / "domain.db")
    store.create({"id": "base", "body": "secret-body-text", "activation": "always"})
    store.create({"id": "py", "body": "py body", "activation": "auto", "globs": ["**/*.py"], "imports": ["base"]})
    return store


def test_compose_step_spans_on_miss_none_on_hit(otel: Otel) -> None:
    store = _store(otel)
    service = ComposeService(store, DictCache())
    request = ComposeRequest.from_args(["a.py"])
    otel.spans.clear()
    service.compose(request)
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        service.compose(request)  # a hit: no span of its own, a mark on the enclosing one
    store.close()
    composes = otel.finished(names.SPAN_COMPOSE)
    assert [s.attributes[names.COMPOSE_CACHE_HIT] for s in composes] == [False]
    assert otel.finished("request")[0].attributes[names.COMPOSE_CACHE_HIT] is True
    prefix = names.SPAN_COMPOSE_STEP_PREFIX
    steps = [s for s in otel.finished() if s.name.startswith(prefix) and s.name != names.SPAN_COMPOSE]
    assert [s.name.rsplit(".", 1)[1] for s in steps] == ["select", "expand_imports", "resolve", "order", "budget",
                                                        "render"]
    assert all(s.parent is not None and s.parent.span_id == composes[0].context.span_id for s in steps)
    assert composes[0].attributes[names.COMPOSE_RULES_INCLUDED] == 2
    for span in otel.finished():  # never a rule body
        assert "secret-body-text" not in json.dumps(dict(span.attributes or {}), default=str)
    durations = {p.attributes[names.STEP]: p.count for p in otel.histogram_points(names.COMPOSE_DURATION)}
    assert durations == dict.fromkeys(("select", "expand_imports", "resolve", "order", "budget", "render"), 1)
    rules = {p.attributes[names.OUTCOME]: p.sum for p in otel.histogram_points(names.COMPOSE_RULES)}
    assert rules["included"] == 2 and rules["selected"] == 2


def test_compose_error_status(otel: Otel) -> None:
    store = _store(otel)
    service = ComposeService(store)
    with contextlib.suppress(CompositionError):
        service.compose(ComposeRequest.from_args(rule_ids=["missing"]))
    store.close()
    span = otel.finished(names.SPAN_COMPOSE)[-1]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "CompositionError"
    select = otel.finished(names.SPAN_COMPOSE_STEP_PREFIX + "select")[-1]
    assert select.status.status_code is StatusCode.ERROR


def test_a_skipped_broken_rule_is_a_span_event_and_counted(otel: Otel) -> None:
    store = _store(otel)
    store.create({"id": "loop-a", "body": "a", "activation": "always", "imports": ["loop-b"]})
    store.create({"id": "loop-b", "body": "b", "imports": ["loop-a"]})
    store.create({"id": "orphan", "body": "o", "activation": "always", "imports": ["gone"]})
    composition = ComposeService(store).compose(ComposeRequest.from_args(["a.py"]))
    store.close()
    assert {p["id"]: p["kind"] for p in composition.problems} == {"loop-a": "import_cycle", "orphan": "missing_import"}
    span = otel.finished(names.SPAN_COMPOSE)[-1]
    events = [dict(e.attributes or {}) for e in span.events if e.name == names.EVENT_COMPOSE_PROBLEM]
    assert sorted(e["error.type"] for e in events) == ["import_cycle", "missing_import"]
    counted = {p.attributes["error.type"]: p.value for p in otel.points(names.COMPOSE_PROBLEMS)}
    assert counted == {"import_cycle": 1, "missing_import": 1}


def _db_spans(otel: Otel, system: str = "sqlite") -> list[Any]:
    return [s for s in otel.finished() if s.attributes and s.attributes.get("db.system.name") == system]


@pytest.mark.both_backends
def test_db_duration_metric_and_spans_for_writes_only(otel: Otel, store_db: Path | str, store_backend: str) -> None:
    store = _store(otel, store_db)  # writes: traced by the sqlite3 / psycopg instrumentation
    spans = _db_spans(otel, store_backend)
    writes = [str(s.attributes["db.query.text"]) for s in spans]
    assert any(t.startswith("INSERT INTO rules") for t in writes)
    if store_backend == "postgresql":  # the same conventions as SQLite's spans, and where the database is
        insert = next(s for s in spans if str(s.attributes["db.query.text"]).startswith("INSERT INTO rules"))
        assert insert.kind is SpanKind.CLIENT
        assert insert.attributes["db.namespace"] == conninfo_to_dict(str(store_db))["dbname"]
        password = str(conninfo_to_dict(str(store_db))["password"])
        assert not [s.name for s in otel.finished() if password in repr(dict(s.attributes or {}))]
    otel.spans.clear()
    store.get("py")
    store.generation()
    store.close()
    points = otel.histogram_points("db.client.operation.duration")
    keys = {(p.attributes["db.operation.name"], p.attributes.get("db.collection.name")) for p in points}
    assert ("SELECT", "rules") in keys and ("SELECT", "store_meta") in keys
    assert ("INSERT", "rules") in keys
    assert all(p.attributes["db.system.name"] == store_backend for p in points)
    assert all("db.query.text" not in p.attributes for p in points)
    assert _db_spans(otel, store_backend) == []  # fast reads: metric only


@pytest.mark.both_backends
def test_db_reads_traced_on_request(otel_factory: Any, monkeypatch: Any, store_db: Path | str,
                                    store_backend: str) -> None:
    monkeypatch.setenv("OTEL_MCP_DB_TRACE_READS", "true")
    otel = otel_factory()
    store = _store(otel, store_db)
    otel.spans.clear()
    store.get("py")
    store.close()
    assert any("FROM rules WHERE id" in str(s.attributes["db.query.text"]) for s in _db_spans(otel, store_backend))


@pytest.mark.both_backends
def test_slow_queries_logged_counted_and_traced_after_the_fact(otel_factory: Any, caplog: Any, store_db: Path | str,
                                                               store_backend: str) -> None:
    otel = otel_factory(alert_slow_query_ms=0)  # every statement is "slow"
    store = _store(otel, store_db)
    otel.spans.clear()
    tracer = otel.tracer_provider.get_tracer("test")
    with caplog.at_level(logging.WARNING, logger="otel_mcp.perf.db"), tracer.start_as_current_span("request") as req:
        store.get("py")
        store.generation()
    store.close()
    spans = _db_spans(otel, store_backend)
    probe = [s for s in spans if "store_meta WHERE key = 'generation'" in str(s.attributes["db.query.text"])]
    assert len(probe) == 1  # a slow read: one span, ours, made with the measured times
    span = probe[0]
    assert span.parent is not None and span.parent.span_id == req.get_span_context().span_id
    assert span.attributes["db.operation.name"] == "SELECT" and span.attributes["db.collection.name"] == "store_meta"
    assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    assert sum(p.value for p in otel.points(names.DB_SLOW_QUERIES)) >= 2
    assert any("slow query" in r.getMessage() for r in caplog.records)
    assert sum(p.value for p in otel.points(names.ALERTS) if p.attributes[names.ALERT] == "slow_query") >= 2


def test_parse_statement() -> None:
    assert parse_statement("SELECT a FROM rules r JOIN x") == ("SELECT", "rules")
    assert parse_statement("  insert into rule_versions (a) VALUES (1)") == ("INSERT", "rule_versions")
    assert parse_statement("UPDATE store_meta SET v = 1") == ("UPDATE", "store_meta")
    assert parse_statement("BEGIN IMMEDIATE") == ("BEGIN", None)


def test_metered_connection_delegates_what_it_does_not_meter(tmp_path: Path) -> None:
    """Everything but ``execute`` is the connection's own: attributes, methods, the transaction block."""
    import sqlite3

    from opentelemetry.sdk.metrics import MeterProvider

    from otel_mcp.telemetry.store import DbTelemetry, MeteredConnection

    raw = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn: Any = MeteredConnection(raw, DbTelemetry(MeterProvider()))
    conn.execute("CREATE TABLE t (n INTEGER)")
    with conn:  # sqlite3's own: commits the block
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.in_transaction
    assert not conn.in_transaction
    assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    assert conn.__wrapped__ is raw and conn.total_changes == raw.total_changes
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")


def test_cache_counters_follow_a_known_sequence(otel: Otel, tmp_path: Path) -> None:
    from otel_mcp.cache.core import TieredCache

    store = _store(otel)
    cache = TieredCache(tmp_path / "l2")
    service = ComposeService(store, cache)
    a, b = ComposeRequest.from_args(["a.py"]), ComposeRequest.from_args(["b.py"])
    for request in (a, a, b, a, b):  # miss, hit, miss, hit, hit
        service.compose(request)
    cache.clear_l1()
    service.compose(a)  # L1 miss, L2 hit
    requests = {(p.attributes[names.TIER], p.attributes[names.RESULT]): p.value
                for p in otel.points(names.CACHE_REQUESTS)}
    assert requests == {("l1", "hit"): 3, ("l1", "miss"): 3, ("l2", "hit"): 1, ("l2", "miss"): 2}
    assert [p.value for p in otel.points(names.CACHE_PUTS)] == [2]
    assert otel.histogram_points(names.CACHE_COMPRESSION_RATIO) is not None
    cache.close()
    store.close()


def test_resource_metrics_present_with_semconv_names(otel: Otel) -> None:
    present = set(otel.metrics())
    for name in ("process.cpu.time", "process.memory.usage", "process.open_file_descriptor.count",
                 "process.thread.count", "cpython.gc.collections", names.STORAGE_SIZE):
        assert name in present, name


def test_every_emitted_metric_is_documented(otel: Otel) -> None:
    documented = {m.name for m in names.CATALOG} | set(names.SYSTEM_METRICS)
    assert set(otel.metrics()) <= documented | {"system.network.io", "system.disk.io"}


def test_docs_table_matches_the_code() -> None:
    text = docs.DOC.read_text()
    assert docs.render(text) == text, "docs/telemetry.md is stale: run python -m otel_mcp.telemetry.docs"


def test_perf_log_lines_parse_and_rotate(tmp_path: Path) -> None:
    from opentelemetry import trace

    path = tmp_path / "perf.log"
    perf = PerfLog(path, max_bytes=2000, backup_count=2)
    perf.start()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("req") as span:
        for _ in range(40):
            perf.request("tools/call", "compose_rules", 0.0012, None, "pipe")
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert perf.flush()
    perf.close()
    files = sorted(tmp_path.glob("perf.log*"))
    assert len(files) == 3  # the file and two backups: rotation at the configured size, count bounded
    assert all(f.stat().st_size <= 2000 for f in files)
    record = json.loads(path.read_text().splitlines()[-1])
    assert record["trace_id"] == trace_id and record["event"] == "request"
    assert record["duration_ms"] == 1.2 and record["outcome"] == "ok"


def test_perf_log_writes_at_its_interval_or_when_a_batch_waits(tmp_path: Path) -> None:
    """``flush_interval`` an hour: a few lines wait for it; ``BATCH`` lines wake the writer at once."""
    import time

    from otel_mcp.telemetry.perflog import BATCH

    path = tmp_path / "perf.log"
    perf = PerfLog(path, flush_interval=3600)
    perf.start()
    try:
        for _ in range(BATCH - 1):
            perf.request("tools/call", "get_rule", 0.001, None, "tcp")
        time.sleep(0.5)
        assert not path.exists() or path.read_text() == ""  # below a batch: waiting for the interval
        perf.request("tools/call", "get_rule", 0.001, None, "tcp")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and perf.written < BATCH:
            time.sleep(0.05)
        assert perf.written == BATCH and len(path.read_text().splitlines()) == BATCH
    finally:
        perf.close()


def test_perf_log_without_file_or_exporter_queues_no_request_lines() -> None:
    """No file and no OTel logger: a request line would be formatted for nobody, so none is queued;
    events (slow operations, alerts) still are, for the logging handler."""
    from opentelemetry.sdk._logs import LoggerProvider

    quiet, exported = PerfLog(None), PerfLog(None, otel_logger=LoggerProvider().get_logger("t"))
    for perf in (quiet, exported):
        perf.request("tools/call", "get_rule", 0.001, None, "tcp")
        perf.event("WARNING", "alert", "slow", {})
    assert [item[0] for item in quiet._queue] == ["event"]
    assert [item[0] for item in exported._queue] == ["request", "event"]


@pytest.mark.parametrize("item", [
    ("request", 1_700_000_000.0004, "tools/call", "compose_rules", 0.0012, None, "pipe", 0, 0, 0),
    ("request", 1_700_000_001.9996, "tools/call", "règle \"x\"", 12.3456789, "tool_error", "tcp", 2**127 + 5, 7, 1),
    ("request", 1_700_000_002.5, "initialize", None, 0.0000004, "-32602", "tcp", 1, 2**64 - 1, 1),
])
def test_perf_log_request_line_is_the_record(item: tuple[Any, ...]) -> None:
    """The request line written from cached pieces parses to the dict the other lines are made from."""
    from otel_mcp.telemetry import perflog

    for _ in range(2):  # the second time from the cached shape
        line = perflog._request_line(item, perflog._request_shape(item))
        assert json.loads(line) == perflog._to_record(item)[0]


def test_sdk_disabled_instruments_nothing(tmp_path: Path) -> None:
    from otel_mcp.telemetry.mcp import McpInstrumentor

    telemetry = setup_telemetry(None, env={**NO_EXPORT, "OTEL_SDK_DISABLED": "true"}, set_global=False)
    assert not telemetry.enabled
    assert not McpInstrumentor().is_instrumented_by_opentelemetry
    telemetry.shutdown()


def test_perf_log_export_all_or_slow(tmp_path: Path, monkeypatch: Any) -> None:
    """``OTEL_MCP_PERF_LOG_EXPORT``: every request line becomes an OTel log record (``all``, default) or none
    does (``slow``: slow requests, slow queries and alerts still do, through the logging handler)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from otel_mcp.telemetry.setup import TelemetryOptions

    exported = {}
    for mode in ("all", "slow"):
        monkeypatch.setenv("OTEL_MCP_PERF_LOG_EXPORT", mode)
        exporter = InMemoryLogRecordExporter()
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        options = TelemetryOptions.from_settings(perf_log=tmp_path / f"{mode}.log")
        telemetry = setup_telemetry(None, env=NO_EXPORT, options=options, logger_provider=provider, set_global=False)
        try:
            assert telemetry.perf is not None
            telemetry.perf.request("tools/call", "compose_rules", 0.002, None, "tcp")
            telemetry.perf.flush()
        finally:
            telemetry.shutdown()
            provider.shutdown()
            uninstrument_all()
        exported[mode] = [r.log_record.event_name for r in exporter.get_finished_logs()]
        assert '"event":"request"' in (tmp_path / f"{mode}.log").read_text()  # the file has it either way
    assert exported["all"] == ["otel_mcp.request"]
    assert exported["slow"] == []


def test_the_pipeline_drops_the_psycopg_instrumentations_own_db_metric() -> None:
    """It records db.client.operation.duration through the global provider for traced statements only; ours is
    the one source (every statement), as for SQLite."""
    from opentelemetry.metrics import get_meter
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    from otel_mcp.telemetry import configurator

    reader = InMemoryMetricReader()
    provider, _ = configurator.meter_provider(Resource({}), [], "grpc", prometheus=False, extra_readers=(reader,))
    for scope in (configurator.PSYCOPG_INSTRUMENTATION_SCOPE, "otel_mcp.telemetry.store"):
        get_meter(scope, meter_provider=provider).create_histogram("db.client.operation.duration").record(0.001)
    data = reader.get_metrics_data()
    assert data is not None
    scopes = {sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics if sm.metrics}
    provider.shutdown()
    assert scopes == {"otel_mcp.telemetry.store"}
