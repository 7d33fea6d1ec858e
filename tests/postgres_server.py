"""The throwaway PostgreSQL the tests start (``PostgresServer``), importable by name from any test folder."""

from otel_mcp.loadtest.loadgen.postgres import PostgresServer

__all__ = ["PostgresServer"]
