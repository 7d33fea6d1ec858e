"""Shared fixtures: temporary stores, real MCP clients over stdio and streamable HTTP.

Everything here is generic so that other suites (telemetry, cache, perf) can reuse it:

- ``db_path``: a SQLite file path in a temporary directory;
- ``store_backend``: ``"sqlite"``, or both ``"sqlite"`` and ``"postgresql"`` for a test (or module) marked
  ``both_backends``; ``store_db``: that backend's fresh ``db`` setting (a file path or a database URL);
  ``store``: the rule store opened on it; ``reopen_store(**kwargs)``: another store on the same database;
- ``postgres_server`` (session): one throwaway PostgreSQL (``tests/postgres_server.py``), installed
  by the project's installer when missing; ``postgres_dsn``: a fresh empty database on it, per test;
- ``db_state(store_db)``: a comparable dump of everything stored (rules, history, generation),
  to assert that a failed call changed nothing;
- ``server_env``: environment for a server subprocess (inherits ours, so coverage and
  ``OTEL_*`` settings pass through; caches and state go to the temporary directory);
- ``stdio_params(...)``: ``StdioServerParameters`` running ``python -m otel_mcp.cli serve``;
- ``http_server_factory(...)``: starts ``otel-mcp serve --transport http`` on a free port,
  waits (bounded) for ``/healthz`` and stops it at teardown; ``http_server`` is one default instance;
- ``mcp_server``: parametrised over ``stdio`` and ``http``; ``async with mcp_server.client() as c``
  gives a connected ``mcp.Client`` either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mcp.client.session
import psycopg
import pytest
from mcp import Client, StdioServerParameters
from postgres_server import PostgresServer
from psycopg import sql
from server_process import HttpServer, server_environment, spawn_http_server, wait_healthy

from otel_mcp.store import RuleStoreBase
from otel_mcp.store.backends import is_postgres, open_store

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = (REPO_ROOT / ".." / "shared" / "corpus" / "awesome-cursorrules" / "rules").resolve()


# -- anyio -------------------------------------------------------------------


# As setup_telemetry does in a server: the contrib DB instrumentation follows the stable database
# conventions. It reads this once per process, at its first instrument(), so set it before any test.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "database")

@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# -- store -------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "rules.db"


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("store_backend", BACKENDS, indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_db(store_backend: str, db_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """The ``db`` setting of a fresh database of ``store_backend``: a SQLite file path or a PostgreSQL URL."""
    if store_backend == "postgresql":
        return str(request.getfixturevalue("postgres_dsn"))
    return db_path


@pytest.fixture
def reopen_store(store_db: Path | str) -> Iterator[Callable[..., RuleStoreBase]]:
    """``reopen_store(**open_store_kwargs)``: another store on ``store_db``, closed at teardown."""
    opened: list[RuleStoreBase] = []

    def reopen(**kwargs: Any) -> RuleStoreBase:
        opened.append(open_store(store_db, **kwargs))
        return opened[-1]

    yield reopen
    for s in opened:
        s.close()


@pytest.fixture
def hold_write_lock(store_db: Path | str) -> Callable[[], Any]:
    """``hold_write_lock()``: another connection holding what every writer takes first (SQLite's write lock,
    PostgreSQL's generation row), as a process in the middle of a write; ``.execute("ROLLBACK")`` releases it."""

    def hold() -> Any:
        if is_postgres(store_db):
            conn: Any = psycopg.connect(str(store_db), autocommit=True)
            conn.execute("BEGIN")
            conn.execute("SELECT value FROM store_meta WHERE key = 'generation' FOR UPDATE")
            return conn
        conn = sqlite3.connect(store_db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        return conn

    return hold


@pytest.fixture
def store(store_db: Path | str) -> Iterator[RuleStoreBase]:
    s = open_store(store_db)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_test_database(postgres_server: PostgresServer) -> str:
    """The URL of the database the tests' schemas live in."""
    return postgres_server.create_database("otel_mcp_tests")


@pytest.fixture
def postgres_dsn(postgres_test_database: str) -> Iterator[str]:
    """A ``postgresql://user:password@127.0.0.1:port/db?options=...`` URL whose ``search_path`` is a new empty
    schema, dropped after the test: as empty as a new database to the store, in 1 ms instead of 300."""
    schema = sql.Identifier(f"t_{secrets.token_hex(6)}")
    with psycopg.connect(postgres_test_database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    yield f"{postgres_test_database}?options=" + quote(f"-c search_path={schema.as_string()}")
    with psycopg.connect(postgres_test_database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))


def dump_db(path: Path | str) -> dict[str, Any]:
    """Everything a write could change, in a form that compares with ``==`` (a SQLite file or a PostgreSQL URL)."""
    conn: Any = psycopg.connect(path) if is_postgres(path) else sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rules = conn.execute("SELECT * FROM rules ORDER BY id").fetchall()
        versions = conn.execute("SELECT * FROM rule_versions ORDER BY rule_id, version").fetchall()
        meta = conn.execute("SELECT * FROM store_meta ORDER BY key").fetchall()
    finally:
        conn.close()
    return {"rules": rules, "versions": versions, "meta": meta}


@pytest.fixture
def db_state() -> Callable[[Path | str], dict[str, Any]]:
    return dump_db


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir() or not any(CORPUS_DIR.glob("*.mdc")):
        pytest.skip(f"the awesome-cursorrules corpus is absent (expected .mdc files in {CORPUS_DIR})")
    return CORPUS_DIR


# -- server subprocesses -----------------------------------------------------


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    """Our environment (coverage, OTEL_* pass through) with caches and state kept in ``tmp_path``."""
    return server_environment(tmp_path)


@pytest.fixture
def files_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture
def stdio_params(
    store_db: Path | str, files_root: Path, server_env: dict[str, str]
) -> Callable[..., StdioServerParameters]:
    """``stdio_params(*extra_args, db=..., env={...})`` -> parameters for ``mcp.Client`` (default db: ``store_db``)."""

    def make(*extra: str, db: Path | str | None = None, env: Mapping[str, str] | None = None
             ) -> StdioServerParameters:
        args = ["-m", "otel_mcp.cli", "serve", "--db", str(db or store_db), "--files-root", str(files_root), *extra]
        return StdioServerParameters(
            command=sys.executable, args=args, env={**server_env, **(env or {})}, cwd=str(REPO_ROOT)
        )

    return make


@pytest.fixture
def http_server_factory(
    tmp_path: Path, store_db: Path | str, files_root: Path, server_env: dict[str, str]
) -> Iterator[Callable[..., HttpServer]]:
    """``http_server_factory(*extra_args, db=..., env={...}, port=...)`` -> a healthy ``HttpServer``
    (default db: ``store_db``)."""
    started: list[HttpServer] = []

    def start(
        *extra: str,
        db: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        root: Path | None = None,
    ) -> HttpServer:
        server = spawn_http_server(*extra, db=db or store_db, files_root=root or files_root, log_dir=tmp_path,
                                   env={**server_env, **(env or {})}, port=port)
        started.append(server)
        wait_healthy(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def http_server(http_server_factory: Callable[..., HttpServer]) -> HttpServer:
    return http_server_factory()


@dataclass
class McpServer:
    """One server under test, whatever the transport: connect with ``async with s.client() as c``."""

    transport: str
    db: Path | str
    files_root: Path
    _connect: Callable[[], Client]
    http: HttpServer | None = None

    def client(self) -> Client:
        return self._connect()


@pytest.fixture(params=["stdio", "http"])
def mcp_server(
    request: pytest.FixtureRequest,
    store_db: Path | str,
    files_root: Path,
    stdio_params: Callable[..., StdioServerParameters],
    http_server_factory: Callable[..., HttpServer],
) -> McpServer:
    if request.param == "stdio":
        params = stdio_params()
        # A first store open creates the schema, so db_state() works before the first client call.
        open_store(store_db).close()
        return McpServer("stdio", store_db, files_root, lambda: Client(params))
    server = http_server_factory()
    return McpServer("http", store_db, files_root, server.client, http=server)


@pytest.fixture
async def mcp_client(mcp_server: McpServer) -> AsyncIterator[Client]:
    async with mcp_server.client() as client:
        yield client


@contextlib.contextmanager
def _handshake_version(version: str) -> Iterator[None]:
    latest = mcp.client.session.LATEST_HANDSHAKE_VERSION
    mcp.client.session.LATEST_HANDSHAKE_VERSION = version  # type: ignore[misc]
    try:
        yield
    finally:
        mcp.client.session.LATEST_HANDSHAKE_VERSION = latest  # type: ignore[misc]


@pytest.fixture
def handshake_version() -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """``with handshake_version("2025-06-18"):`` the SDK client offers that version in ``initialize``
    (``mode="legacy"``); it always offers its latest handshake version otherwise."""
    return _handshake_version


# -- tool-call helpers (fixtures, so that no test module imports conftest) -------


def tool_text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def assert_no_traceback(text: str) -> None:
    for marker in ("Traceback (most recent call last)", 'File "/', '.py", line '):
        assert marker not in text, f"traceback text reached the client: {text[:2000]}"


class ToolCalls:
    """``await calls.ok(client, name, args)`` -> structured result; ``await calls.error(...)`` -> error text."""

    text = staticmethod(tool_text)
    no_traceback = staticmethod(assert_no_traceback)

    @staticmethod
    def data(result: Any) -> Any:
        assert not result.is_error, f"tool call failed: {tool_text(result)}"
        assert_no_traceback(tool_text(result))
        if result.structured_content is not None:
            return result.structured_content
        return json.loads(tool_text(result))

    async def ok(self, client: Client, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return self.data(await client.call_tool(name, arguments or {}))

    async def document(
        self, client: Client, name: str, arguments: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A document tool's (``compose_rules``, ``get_rule``) text and metadata; checks the metadata text copy."""
        result = await client.call_tool(name, arguments or {})
        metadata = self.data(result)
        text, metadata_text = (block.text for block in result.content)
        assert json.loads(metadata_text) == metadata, "the second text block must be the structured content as JSON"
        return text, metadata

    async def error(self, client: Client, name: str, arguments: dict[str, Any] | None = None) -> str:
        result = await client.call_tool(name, arguments or {})
        text = tool_text(result)
        assert result.is_error, f"{name}({arguments}) should have failed but returned {text[:500]}"
        assert_no_traceback(text)
        return text

    @staticmethod
    @contextlib.contextmanager
    def unchanged(path: Path | str) -> Iterator[None]:
        """Assert that the block leaves the database at ``path`` exactly as it was."""
        before = dump_db(path)
        yield
        assert dump_db(path) == before, "a failed call changed stored data"


@pytest.fixture
def calls() -> ToolCalls:
    return ToolCalls()


@pytest.fixture
def run_cli(server_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli(*args, env={...})``: run ``python -m otel_mcp.cli`` in a subprocess and capture its output."""

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otel_mcp.cli", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**server_env, **(env or {})}, cwd=REPO_ROOT,
            timeout=timeout, check=False,
        )

    return run
