"""Which backend a ``db`` setting names, opening it, and showing it without its password.

``db`` is a SQLite file path (the default), ``sqlite:///absolute/path``, or a PostgreSQL URL
(``postgresql://user:password@host:port/database``, ``postgres://`` too; any libpq parameter in
the query string). A URL is shown everywhere (logs, spans, ``stats``, errors) through ``redact``.
"""

from __future__ import annotations

import re
from pathlib import Path

from otel_mcp.config import Settings
from otel_mcp.store.base import RuleStoreBase
from otel_mcp.store.model import RuleLimits

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"
# user:password@ up to the authority's last "@" (an unescaped "@" in a password does not end it)
_PASSWORD_IN_URL = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<secret>[^/?#]*)(?=@[^@/?#]*(?:[/?#]|$))",
                              re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(?P<head>[?&]password=)(?P<secret>[^&#]*)", re.IGNORECASE)
REDACTED = "***"


def is_postgres(db: Path | str) -> bool:
    return isinstance(db, str) and db.lower().startswith(POSTGRES_SCHEMES)


def database_setting(value: str) -> Path | str:
    """The ``db`` setting's value: a PostgreSQL URL as given, anything else as a SQLite file path."""
    if is_postgres(value):
        return value
    if value.lower().startswith(SQLITE_SCHEME):
        # sqlite:///abs/path (as a file:/// URL) and SQLAlchemy's sqlite:////abs/path both mean /abs/path.
        return Path("/" + value[len(SQLITE_SCHEME):].lstrip("/"))
    if "://" in value:
        raise ValueError("expected a file path, sqlite:///path or postgresql://user:password@host:port/database")
    return Path(value).expanduser()


def redact(db: Path | str) -> str:
    """``db`` for display: a URL's password (in the authority or a ``password=`` parameter) as ``***``."""
    text = str(db)
    text = _PASSWORD_IN_URL.sub(lambda m: m["head"] + REDACTED, text)
    return _PASSWORD_PARAM.sub(lambda m: m["head"] + REDACTED, text)


def open_store(db: Path | str, limits: RuleLimits = RuleLimits(), *, read_only: bool = False,
               pool_size: int = Settings.db_pool_size, timeout_s: float = Settings.db_timeout_ms / 1000
               ) -> RuleStoreBase:
    """The store ``db`` names (see the module's docstring); read-only opens a SQLite file only if it exists.

    :param pool_size: PostgreSQL only: most connections this process opens (default: the ``db_pool_size`` setting)
    :param timeout_s: seconds to wait for a connection or for another writer (default: the ``db_timeout_ms`` setting)
    """
    if is_postgres(db):
        from otel_mcp.store.postgres import PostgresRuleStore

        return PostgresRuleStore(str(db), limits, read_only=read_only, pool_size=pool_size, timeout=timeout_s)
    from otel_mcp.store.sqlite import RuleStore

    path = database_setting(str(db))
    assert isinstance(path, Path)
    return RuleStore(path, limits, busy_timeout=timeout_s, read_only=read_only and path.exists())
