"""Settings: flags > OTEL_MCP_* environment > defaults; bad values refused, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_mcp.config import Settings, setting_help
from otel_mcp.errors import ConfigError


def test_defaults() -> None:
    s = Settings.load({}, {})
    assert (s.transport, s.host, s.port) == ("stdio", "127.0.0.1", 8000)
    assert s.db.name == "rules.db" and "otel-mcp" in str(s.db)
    assert (s.max_body_bytes, s.max_import_depth, s.read_only, s.cache) == (512 * 1024, 5, False, True)
    assert (s.max_settings_bytes, s.max_result_bytes) == (64 * 1024, 1000 * 1024)


def test_env_overrides_defaults_and_flags_override_env(tmp_path: Path) -> None:
    env = {"OTEL_MCP_PORT": "9001", "OTEL_MCP_TRANSPORT": "http", "OTEL_MCP_DB": str(tmp_path / "e.db"),
           "OTEL_MCP_READ_ONLY": "yes", "OTEL_MCP_LOG_LEVEL": "debug"}
    s = Settings.load({}, env)
    assert (s.port, s.transport, s.db, s.read_only, s.log_level) == (9001, "http", tmp_path / "e.db", True, "debug")
    s = Settings.load({"port": "9002", "db": str(tmp_path / "f.db"), "read_only": False, "transport": None}, env)
    assert (s.port, s.db, s.read_only, s.transport) == (9002, tmp_path / "f.db", False, "http")


def test_empty_env_value_means_unset() -> None:
    assert Settings.load({}, {"OTEL_MCP_PORT": ""}).port == 8000


def test_paths_expand_user() -> None:
    s = Settings.load({"db": "~/x/rules.db"}, {})
    assert s.db == Path.home() / "x" / "rules.db"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"port": "eighty"}, {}, r"port \(from --port\) has an invalid value 'eighty'"),
        ({}, {"OTEL_MCP_PORT": "x"}, r"port \(from OTEL_MCP_PORT\) has an invalid value 'x'"),
        ({"port": True}, {}, r"port \(from --port\) has an invalid value True"),
        ({"port": "70000"}, {}, "port must be between 0 and 65535, got 70000"),
        ({"port": "-1"}, {}, "port must be between 0 and 65535"),
        ({}, {"OTEL_MCP_READ_ONLY": "maybe"}, r"read_only \(from OTEL_MCP_READ_ONLY\) .*expected true or false"),
        ({}, {"OTEL_MCP_TRANSPORT": "carrier-pigeon"}, "transport must be 'stdio' or 'http', got 'carrier-pigeon'"),
        ({}, {"OTEL_MCP_MAX_BODY_BYTES": "0"}, "max_body_bytes must be at least 1, got 0"),
        ({}, {"OTEL_MCP_MAX_IMPORT_DEPTH": "-3"}, "max_import_depth must be at least 1"),
        ({}, {"OTEL_MCP_MAX_SETTINGS_BYTES": "0"}, "max_settings_bytes must be at least 1, got 0"),
        ({}, {"OTEL_MCP_MAX_RESULT_BYTES": "1000"}, "max_result_bytes must be at least 16384, got 1000"),
        ({}, {"OTEL_MCP_MAX_SESSIONS": "lots"}, r"max_sessions \(from OTEL_MCP_MAX_SESSIONS\)"),
        ({"log_level": "LOUD"}, {}, "log_level must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"),
        ({}, {"OTEL_MCP_GC_YOUNG_THRESHOLD": "-1"}, "gc_young_threshold must be 0 or more, got -1"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(flags: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(flags, env)


def test_bearer_token(tmp_path: Path) -> None:
    assert Settings.load({}, {}).bearer_token() is None
    assert Settings.load({}, {"OTEL_MCP_AUTH_TOKEN": "s3cret"}).bearer_token() == "s3cret"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\nignored?\n")
    assert Settings.load({}, {"OTEL_MCP_AUTH_TOKEN_FILE": str(token_file)}).bearer_token() == "from-file"
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match=r"auth_token_file .* is empty"):
        Settings.load({}, {"OTEL_MCP_AUTH_TOKEN_FILE": str(empty)}).bearer_token()
    with pytest.raises(ConfigError, match=r"auth_token_file .* cannot be read"):
        Settings.load({}, {"OTEL_MCP_AUTH_TOKEN_FILE": str(tmp_path / "missing")}).bearer_token()


def test_every_setting_has_help() -> None:
    helps = setting_help()
    assert set(helps) == set(Settings.__dataclass_fields__)
    assert all(helps.values())
