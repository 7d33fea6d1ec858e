"""The rule store: model validation, CRUD with optimistic concurrency, history, rollback, search, migrations.

The store tests run on both backends (``both_backends``); the SQLite file's own (WAL, its migrations)
here, PostgreSQL's own in test_store_postgres.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from otel_mcp.config import Settings
from otel_mcp.errors import InvalidRule, RuleExists, RuleNotFound, VersionConflict
from otel_mcp.store import (
    Activation,
    RuleLimits,
    RuleSpec,
    RuleStore,
    RuleStoreBase,
    StoreBusy,
    build_spec,
    check_rule_id,
    merge_spec,
    schema,
)
from otel_mcp.store.model import MAX_DESCRIPTION_CHARS, MAX_LIST_ITEMS, MAX_TAG_CHARS, read_bytes

pytestmark = pytest.mark.both_backends


def spec(rule_id: str = "r", **kw: Any) -> dict[str, Any]:
    return {"id": rule_id, "body": kw.pop("body", f"body of {rule_id}\n"), **kw}


# -- model validation ------------------------------------------------------------


def test_build_spec_defaults() -> None:
    s = build_spec({"id": "a", "body": "x"})
    assert s.activation is Activation.MANUAL
    assert (s.globs, s.exclude_globs, s.tags, s.imports, s.overrides) == ((),) * 5
    assert (s.priority, s.enabled, s.settings, s.description) == (0, True, {}, "")


def test_build_spec_dedupes_lists_keeping_order() -> None:
    s = build_spec(spec(tags=["b", "a", "b"], globs=["*.py", "*.py", "*.md"]))
    assert s.tags == ("b", "a")
    assert s.globs == ("*.py", "*.md")


@pytest.mark.parametrize(
    "rule_id",
    ["a", "a1", "a.b_c-d", "0", "x" * 128],
)
def test_valid_ids(rule_id: str) -> None:
    assert check_rule_id(rule_id) == rule_id


@pytest.mark.parametrize(
    "rule_id",
    ["", "A", "a b", "-a", "a-", ".a", "a/b", "../x", "x" * 129, "é", None, 5, ["a"]],
)
def test_invalid_ids(rule_id: Any) -> None:
    with pytest.raises(InvalidRule, match="is not a valid rule id"):
        check_rule_id(rule_id)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"body": 5}, "body must be a string"),
    ({"body": None}, "body must be a string"),
    ({"body": "a\x00b"}, "NUL"),
    ({"description": 5}, "description must be a string"),
    ({"description": "two\nlines"}, "description must be one line"),
    ({"description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, "description must be one line"),
    ({"activation": "sometimes"}, "activation 'sometimes' is not one of: always, auto, agent_requested, manual"),
    ({"priority": True}, "priority must be an integer"),
    ({"priority": "1"}, "priority must be an integer"),
    ({"priority": 1.5}, "priority must be an integer"),
    ({"priority": 10**6 + 1}, "priority must be an integer between -1000000 and 1000000"),
    ({"imports": "other"}, "imports must be a list of strings, got str"),
    ({"imports": ["Bad Id"]}, "import 'Bad Id' is not a valid rule id"),
    ({"imports": ["r"]}, "rule 'r' imports itself"),
    ({"imports": [""]}, r"imports\[0\] must be a non-empty string"),
    ({"overrides": ["ok", 3]}, r"overrides\[1\] must be a non-empty string"),
    ({"tags": {"a": 1}}, "tags must be a list of strings, got dict"),
    ({"tags": ["t"] * 0 + [f"t{i}" for i in range(MAX_LIST_ITEMS + 1)]}, f"at most {MAX_LIST_ITEMS}"),
    ({"tags": ["t" * (MAX_TAG_CHARS + 1)]}, rf"tags\[0\] has {MAX_TAG_CHARS + 1} characters"),
    ({"globs": [f"*.{i}" for i in range(MAX_LIST_ITEMS + 1)]}, f"globs has {MAX_LIST_ITEMS + 1} items"),
    ({"overrides": [f"o{i}" for i in range(MAX_LIST_ITEMS + 1)]}, f"overrides has {MAX_LIST_ITEMS + 1} items"),
    ({"settings": {"k": "v" * Settings.max_settings_bytes}}, r"the limit is \d+ bytes \(max_settings_bytes\)"),
    ({"settings": ["a"]}, "settings must be an object with string keys"),
    ({"settings": {"k": {1, 2}}}, "settings must be JSON-serialisable"),
    ({"enabled": "yes"}, "enabled must be true or false"),
    ({"activation": "auto"}, "an 'auto' rule needs at least one glob"),
    ({"globs": ["!*.py"]}, "negation is not supported"),
    ({"globs": ["src/{a,b"]}, "unclosed '{'"),
    ({"exclude_globs": ["[abc"]}, "unclosed '\\['"),
    ({"globs": ["a" * 600]}, "glob is 600 characters; the limit is 512"),
    ({"colour": "red"}, "unknown rule field"),
]


@pytest.mark.parametrize(("override", "message"), BAD_FIELDS)
def test_build_spec_rejects_bad_fields(override: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        build_spec(spec(**override))


def test_build_spec_rejects_missing_id_and_body() -> None:
    with pytest.raises(InvalidRule, match="is not a valid rule id"):
        build_spec({"body": "x"})
    with pytest.raises(InvalidRule, match="body must be a string"):
        build_spec({"id": "x"})


def test_limits_body_bytes_and_imports() -> None:
    limits = RuleLimits(max_body_bytes=10, max_imports=2)
    assert build_spec(spec(body="é" * 5), limits).body == "é" * 5  # 10 bytes in UTF-8
    with pytest.raises(InvalidRule, match="body is 12 bytes; the limit is 10 bytes"):
        build_spec(spec(body="é" * 6), limits)
    with pytest.raises(InvalidRule, match="rule has 3 imports; the limit is 2"):
        build_spec(spec(imports=["a", "b", "c"]), limits)


def test_read_size_limit_counts_the_encoded_rule() -> None:
    """A rule is accepted only if it fits when read back: the body once as JSON, the other fields twice."""
    plain = spec(body="x" * 1000, settings={"k": "v" * 100})
    size = read_bytes(build_spec(plain))
    assert size > 1000 + 2 * 100
    assert build_spec(plain, RuleLimits(max_read_bytes=size)).body == "x" * 1000
    with pytest.raises(InvalidRule, match=rf"would be {size} bytes when read back; the limit is {size - 1} bytes"):
        build_spec(plain, RuleLimits(max_read_bytes=size - 1))
    quoted = spec(body='"' * 1000)  # each quote is 2 bytes once encoded
    assert read_bytes(build_spec(quoted)) > 2000


def test_content_hash_covers_body_and_metadata() -> None:
    base = build_spec(spec())
    assert base.content_hash() == build_spec(spec()).content_hash()
    for change in ({"body": "other"}, {"priority": 1}, {"tags": ["t"]}, {"settings": {"k": 1}}, {"enabled": False}):
        assert build_spec(spec(**change)).content_hash() != base.content_hash(), change


def test_merge_spec_keeps_unchanged_fields_and_refuses_id_change() -> None:
    current = build_spec(spec(tags=["t"], priority=3))
    merged = merge_spec(current, {"body": "new", "priority": None})
    assert merged.body == "new" and merged.priority == 3 and merged.tags == ("t",)
    with pytest.raises(InvalidRule, match="id cannot be changed"):
        merge_spec(current, {"id": "other"})
    with pytest.raises(InvalidRule, match="an 'auto' rule needs at least one glob"):
        merge_spec(current, {"activation": "auto"})


# -- create / get / update / delete -----------------------------------------------------


def test_create_and_get(store: RuleStoreBase) -> None:
    rule = store.create(spec("a", description="A rule", tags=["x"]))
    assert rule.version == 1
    assert rule.etag == rule.spec.content_hash()
    assert rule.created_at == rule.updated_at > 0
    got = store.get("a")
    assert got == rule
    assert store.count() == 1


def test_create_accepts_a_rulespec(store: RuleStoreBase) -> None:
    rule = store.create(RuleSpec(id="s", body="b"))
    assert store.get("s").etag == rule.etag


def test_create_existing_is_refused(store: RuleStoreBase, store_db: Path | str, db_state: Any) -> None:
    store.create(spec("a"))
    before = db_state(store_db)
    with pytest.raises(RuleExists, match="rule 'a' already exists; use update_rule"):
        store.create(spec("a", body="different"))
    assert db_state(store_db) == before


def test_invalid_create_writes_nothing(store: RuleStoreBase, store_db: Path | str, db_state: Any) -> None:
    before = db_state(store_db)
    with pytest.raises(InvalidRule):
        store.create(spec("a", priority="high"))
    assert db_state(store_db) == before
    assert store.generation() == 0


def test_get_missing(store: RuleStoreBase) -> None:
    with pytest.raises(RuleNotFound, match="rule 'nope' does not exist"):
        store.get("nope")
    store.create(spec("a"))
    with pytest.raises(RuleNotFound, match="version 7 of rule 'a' does not exist"):
        store.get("a", 7)


def test_update_bumps_version_and_keeps_created_at(store: RuleStoreBase) -> None:
    created = store.create(spec("a"))
    updated = store.update("a", 1, {"body": "new body", "priority": 5})
    assert updated.version == 2
    assert updated.body == "new body" and updated.priority == 5
    assert updated.etag != created.etag
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert store.get("a") == updated
    assert store.get("a", 1).body == created.body


def test_stale_update_is_a_conflict_naming_the_current_version(
        store: RuleStoreBase, store_db: Path | str, db_state: Any) -> None:
    store.create(spec("a"))
    store.update("a", 1, {"body": "v2"})
    before = db_state(store_db)
    with pytest.raises(VersionConflict) as info:
        store.update("a", 1, {"body": "lost?"})
    assert "expected version 1, current version is 2" in str(info.value)
    assert (info.value.expected, info.value.current, info.value.rule_id) == (1, 2, "a")
    assert db_state(store_db) == before


@pytest.mark.parametrize("bad", ["1", 1.0, None, True])
def test_update_rejects_non_integer_expected_version(store: RuleStoreBase, bad: Any) -> None:
    store.create(spec("a"))
    with pytest.raises(InvalidRule, match="expected_version must be an integer"):
        store.update("a", bad, {"body": "x"})
    assert store.get("a").version == 1


def test_update_missing_and_invalid_changes(store: RuleStoreBase, store_db: Path | str, db_state: Any) -> None:
    with pytest.raises(RuleNotFound):
        store.update("ghost", 1, {"body": "x"})
    store.create(spec("a"))
    before = db_state(store_db)
    for changes in ({"body": 3}, {"id": "b"}, {"globs": ["{x"]}, {"unknown": 1}):
        with pytest.raises(InvalidRule):
            store.update("a", 1, changes)
    assert db_state(store_db) == before


def test_delete_keeps_history_and_recreate_continues_versions(store: RuleStoreBase) -> None:
    store.create(spec("a"))
    store.update("a", 1, {"body": "v2"})
    with pytest.raises(VersionConflict, match="current version is 2"):
        store.delete("a", 1)
    assert store.delete("a", 2) == 3
    with pytest.raises(RuleNotFound):
        store.get("a")
    with pytest.raises(RuleNotFound, match="version 3 of rule 'a'"):
        store.get("a", 3)
    assert store.get("a", 2).body == "v2"
    with pytest.raises(RuleNotFound):
        store.delete("a", 3)
    again = store.create(spec("a", body="reborn"))
    assert again.version == 4
    assert [e.operation for e in store.history("a")] == ["create", "delete", "update", "create"]


def test_history_newest_first_with_limit(store: RuleStoreBase) -> None:
    store.create(spec("a"))
    for v in range(1, 5):
        store.update("a", v, {"body": f"v{v + 1}"})
    history = store.history("a")
    assert [e.version for e in history] == [5, 4, 3, 2, 1]
    assert history[0].spec.body == "v5" and history[-1].operation == "create"
    assert [e.version for e in store.history("a", limit=2)] == [5, 4]
    assert history[0].to_dict()["rule"].get("body") is None
    assert history[0].to_dict(with_body=True)["rule"]["body"] == "v5"
    with pytest.raises(RuleNotFound):
        store.history("nothing")


def test_rollback(store: RuleStoreBase) -> None:
    v1 = store.create(spec("a", body="one", tags=["t"]))
    store.update("a", 1, {"body": "two", "tags": ["u"]})
    rolled = store.rollback("a", 1)
    assert rolled.version == 3
    assert rolled.body == "one" and rolled.tags == ("t",)
    assert rolled.etag == v1.etag
    assert rolled.created_at == v1.created_at
    assert store.history("a")[0].operation == "rollback"


def test_rollback_conflict_and_errors(store: RuleStoreBase, store_db: Path | str, db_state: Any) -> None:
    store.create(spec("a", body="one"))
    store.update("a", 1, {"body": "two"})
    before = db_state(store_db)
    with pytest.raises(VersionConflict, match="expected version 1, current version is 2"):
        store.rollback("a", 1, expected_version=1)
    with pytest.raises(RuleNotFound, match="version 9 of rule 'a'"):
        store.rollback("a", 9)
    with pytest.raises(RuleNotFound):
        store.rollback("ghost", 1)
    assert db_state(store_db) == before
    assert store.rollback("a", 1, expected_version=2).version == 3


def test_rollback_revives_a_deleted_rule_but_not_to_a_deletion(store: RuleStoreBase) -> None:
    store.create(spec("a", body="one"))
    store.delete("a", 1)
    with pytest.raises(InvalidRule, match="version 2 of rule 'a' is a deletion"):
        store.rollback("a", 2)
    revived = store.rollback("a", 1)
    assert revived.version == 3 and store.get("a").body == "one"


def test_rollback_respects_current_limits(store: RuleStoreBase, reopen_store: Any) -> None:
    store.create(spec("a", body="x" * 100))
    store.update("a", 1, {"body": "small"})
    small = reopen_store(limits=RuleLimits(max_body_bytes=50))
    assert small.history("a")[-1].spec.body == "x" * 100  # old history stays readable
    with pytest.raises(InvalidRule, match="body is 100 bytes; the limit is 50"):
        small.rollback("a", 1)
    assert small.get("a").version == 2


def test_upsert(store: RuleStoreBase) -> None:
    rule, status = store.upsert(spec("a"))
    assert (status, rule.version) == ("created", 1)
    same, status = store.upsert(spec("a"))
    assert (status, same.version) == ("unchanged", 1)
    changed, status = store.upsert(spec("a", body="new"))
    assert (status, changed.version) == ("updated", 2)
    assert changed.created_at == rule.created_at
    assert [e.operation for e in store.history("a")] == ["import", "import"]


def test_generation_moves_only_on_successful_writes(store: RuleStoreBase) -> None:
    g0 = store.generation()
    store.create(spec("a"))
    assert store.generation() == g0 + 1
    with pytest.raises(VersionConflict):
        store.update("a", 5, {"body": "x"})
    with pytest.raises(RuleExists):
        store.create(spec("a"))
    assert store.generation() == g0 + 1
    generation, rules = store.snapshot()
    assert generation == g0 + 1 and [r.id for r in rules] == ["a"]


# -- list / search ------------------------------------------------------------------


def test_list_page_filters_and_pagination(store: RuleStoreBase) -> None:
    for i in range(7):
        store.create(
            spec(
                f"r{i}", activation="always" if i % 2 else "manual", tags=["even"] if i % 2 == 0 else ["odd"],
                enabled=i != 3,
            )
        )
    page, cursor = store.list_page(limit=3)
    assert [r.id for r in page] == ["r0", "r1", "r2"] and cursor == "r2"
    page, cursor = store.list_page(limit=3, after=cursor)
    assert [r.id for r in page] == ["r3", "r4", "r5"] and cursor == "r5"
    page, cursor = store.list_page(limit=3, after=cursor)
    assert [r.id for r in page] == ["r6"] and cursor is None
    assert [r.id for r in store.list_page(activation="always")[0]] == ["r1", "r3", "r5"]
    assert [r.id for r in store.list_page(tag="even")[0]] == ["r0", "r2", "r4", "r6"]
    assert [r.id for r in store.list_page(enabled=False)[0]] == ["r3"]
    assert [r.id for r in store.list_page(activation="always", enabled=True)[0]] == ["r1", "r5"]
    assert store.list_page(tag="none")[0] == []
    assert len(store.list_page(limit=0)[0]) == 1  # clamped to at least one


def test_search_finds_id_description_and_body(store: RuleStoreBase) -> None:
    store.create(spec("python-style", description="How we write Python", body="Use type hints everywhere.\n"))
    store.create(spec("react", description="Frontend", body="Prefer function components with hooks.\n"))
    assert [h.rule.id for h in store.search("hooks")] == ["react"]
    assert [h.rule.id for h in store.search("python")] == ["python-style"]
    hit = store.search("hints")[0]
    assert "[hints]" in hit.snippet
    assert store.search("absent") == []


@pytest.mark.parametrize(
    "query", ['"', "AND", "OR NOT", "a*", "NEAR(a b)", "col:val", "-x", "(", "'; DROP TABLE rules"]
)
def test_search_treats_query_as_text_not_syntax(store: RuleStoreBase, query: str) -> None:
    store.create(spec("a", body="plain text\n"))
    if not query.replace('"', " ").split():
        with pytest.raises(InvalidRule, match="at least one word"):
            store.search(query)
    else:
        assert isinstance(store.search(query), list)
    assert store.count() == 1


def test_search_follows_updates_and_deletes(store: RuleStoreBase) -> None:
    store.create(spec("a", body="apples\n"))
    store.update("a", 1, {"body": "oranges\n"})
    assert store.search("apples") == []
    assert [h.rule.version for h in store.search("oranges")] == [2]
    store.delete("a", 2)
    assert store.search("oranges") == []
    with pytest.raises(InvalidRule):
        store.search("   ")


# -- store modes and locking ---------------------------------------------------------


def test_read_only_store_refuses_writes(store: RuleStoreBase, reopen_store: Any) -> None:
    store.create(spec("a"))
    ro = reopen_store(read_only=True)
    assert ro.get("a").id == "a"
    with pytest.raises(InvalidRule, match="read-only"):
        ro.create(spec("b"))


def test_busy_writer_gives_store_busy(store: RuleStoreBase, reopen_store: Any, hold_write_lock: Any) -> None:
    store.create(spec("a"))
    impatient = reopen_store(timeout_s=0.05)
    blocker = hold_write_lock()
    try:
        with pytest.raises(StoreBusy, match="locked by another writer"):
            impatient.update("a", 1, {"body": "x"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.get("a").version == 1
    assert impatient.update("a", 1, {"body": "x"}).version == 2  # the connection is usable again


def test_store_creates_parent_directory_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "rules.db"
    s = RuleStore(path)
    try:
        assert path.exists()
        assert s._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        s.close()


# -- migrations ---------------------------------------------------------------------


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])
    finally:
        conn.close()


def _write_v1_file(path: Path) -> None:
    """A database as the first release wrote it: migration 1 only, with one rule and its history."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in schema._statements(schema.MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    old = build_spec({"id": "legacy", "body": "written by version one\n", "description": "old rule"})
    conn.execute(
        "INSERT INTO rules VALUES (?, 1, ?, ?, ?, 'manual', '[]', '[]', '[]', 0, '[]', '[]', '{}', 1, 1.0, 1.0)",
        (old.id, old.content_hash(), old.description, old.body),
    )
    conn.execute(
        "INSERT INTO rule_versions VALUES (?, 1, 'create', ?, ?, 1.0)",
        (old.id, old.content_hash(), json.dumps(old.to_dict(), sort_keys=True)),
    )
    conn.close()


def test_fresh_file_is_at_current_schema(db_path: Path) -> None:
    RuleStore(db_path).close()
    assert _schema_version(db_path) == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)


def test_older_schema_file_is_migrated_and_keeps_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _write_v1_file(path)
    assert _schema_version(path) == 1
    s = RuleStore(path)
    try:
        assert _schema_version(path) == schema.SCHEMA_VERSION
        legacy = s.get("legacy")
        assert legacy.version == 1 and legacy.description == "old rule"
        assert [h.rule.id for h in s.search("version one")] == ["legacy"]  # FTS was back-filled
        updated = s.update("legacy", 1, {"body": "now searchable too\n"})
        assert updated.version == 2
        assert [h.rule.id for h in s.search("searchable")] == ["legacy"]
        assert [e.version for e in s.history("legacy")] == [2, 1]
    finally:
        s.close()
    assert schema.migrate(sqlite3.connect(path, isolation_level=None)) == schema.SCHEMA_VERSION  # idempotent


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    RuleStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE schema_version SET version = ?", (schema.SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(schema.SchemaTooNew, match=r"newer than this otel-mcp supports .*upgrade otel-mcp"):
        RuleStore(path)
    assert _schema_version(path) == schema.SCHEMA_VERSION + 1


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "partial.db"
    _write_v1_file(path)
    monkeypatch.setattr(schema, "MIGRATIONS", (schema.MIGRATIONS[0], "CREATE TABLE broken (x);\nTHIS IS NOT SQL;"))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'broken'").fetchone() is None
    conn.close()
    assert _schema_version(path) == 1


def test_statements_splitter_keeps_triggers_whole() -> None:
    statements = schema._statements(schema.MIGRATIONS[1])
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 3 and all(t.endswith("END;") for t in triggers)
    assert schema._statements("SELECT 1;\nSELECT 2") == ["SELECT 1;", "SELECT 2"]
