"""The PostgreSQL test fixture itself: a private cluster, not run as root, password required over TCP."""

from __future__ import annotations

import os

import psycopg
import pytest
from postgres_server import PostgresServer


def test_fresh_database_per_test_on_a_private_cluster(postgres_server: PostgresServer, postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        data_dir = conn.execute("SHOW data_directory").fetchone()
        port = conn.execute("SHOW port").fetchone()
    assert tables == (0,)
    assert data_dir == (str(postgres_server.data),)
    assert port == (str(postgres_server.port),)
    owner = os.stat(postgres_server.data).st_uid
    assert owner != 0, "PostgreSQL must not run as root"


def test_tcp_connections_need_the_password(postgres_server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres_server.dsn(password=False), connect_timeout=5).close()
