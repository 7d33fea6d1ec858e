"""A throwaway PostgreSQL server for tests and the load suite, from Debian's ``postgresql`` package.

``initdb`` and ``pg_ctl`` come from ``/usr/lib/postgresql/<major>/bin`` (the installer finds the
newest and installs the package when it is missing). The cluster lives in a temporary folder with
its unix socket, listens on a free loopback port, and requires a password over TCP (scram), so the
DSNs the tests use carry a real secret. PostgreSQL refuses to run as root: as root, the server runs
as the ``postgres`` system user (created by the package) or ``nobody``, owning the folder.

In the package (not under tests/) because ``otel-mcp perf run replicas`` starts one too; the tests import it
through ``tests/postgres_server.py``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql

from otel_mcp.loadtest.loadgen.server import free_port
from otel_mcp.stack.installer import ensure_postgresql

# Durability off: a test cluster is thrown away, and fsync per commit would dominate the run time.
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "listen_addresses": "127.0.0.1",
}
_START_TIMEOUT = 60  # seconds; a bound on pg_ctl -w, not a performance assertion
SERVICE_USERS = ("postgres", "nobody")


class PostgresServer:
    """``start()``/``stop()`` a private cluster; ``dsn(database)`` to connect; ``remove()`` at the end.

    ``stop()`` then ``start()`` again keeps the data (tests of a database that goes away and comes back).
    """

    user = "otel_mcp"

    def __init__(self, base: Path | None = None, settings: Mapping[str, str] | None = None) -> None:
        """:param settings: server settings over the defaults (``-c name=value``)"""
        self.settings = {**_SERVER_SETTINGS, **(settings or {})}
        self.bin_dir = ensure_postgresql(progress=True)
        self.root = Path(tempfile.mkdtemp(prefix="otel-mcp-pg-", dir=base))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.password = secrets.token_hex(12)
        self.port = 0
        self._run_as = _service_user() if os.geteuid() == 0 else None
        self._initdb()

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", self._run_as, "--", *argv] if self._run_as else argv

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, cwd=self.root, timeout=_START_TIMEOUT + 30)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}\n{log}")

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            # mkdtemp makes a 0700 folder: the service user must own it to create the cluster in it.
            ids = pwd.getpwnam(self._run_as)
            for path in (self.root, self.socket_dir, pwfile):
                os.chown(path, ids.pw_uid, ids.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        pwfile.unlink()

    def start(self) -> None:
        self.port = self.port or free_port()
        options = {**self.settings, "port": str(self.port), "unix_socket_directories": str(self.socket_dir)}
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        self._run("pg_ctl", "start", "-w", "-t", str(_START_TIMEOUT), "-D", str(self.data), "-l", str(self.log),
                  "-o", flags)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        """Started; removed (stopped, its folder deleted) at the end of the block, whatever happens."""
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def dsn(self, database: str = "postgres", *, password: bool = True) -> str:
        """A ``postgresql://`` URL over TCP; with ``password=False`` one that the server will refuse."""
        secret = f":{self.password}" if password else ""
        return f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None, template: str = "template0") -> str:
        """A new database, a copy of ``template`` (default ``template0``: empty, nothing any test added to
        ``template1``); its DSN."""
        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                          sql.Identifier(template)))
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _service_user() -> str:
    for name in SERVICE_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError(f"PostgreSQL refuses to run as root and none of the users {SERVICE_USERS} exists")
