"""Settings: command-line flags, then ``OTEL_MCP_*`` environment variables, then defaults.

Every setting is declared once in ``Settings`` (name, type, default, help);
its environment variable is ``OTEL_MCP_`` + the upper-cased name. A bad value
is refused at start with a ``ConfigError`` naming the setting and where it
came from. Telemetry is configured by the standard ``OTEL_*`` variables, not here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir, user_data_dir, user_state_dir

from otel_mcp.errors import ConfigError

ENV_PREFIX = "OTEL_MCP_"
APP = "otel-mcp"
FASTPATH_DEFAULT = "auto"  # telemetry/sdk_internals.py reads OTEL_MCP_FASTPATH before the settings exist
DEMO_DB = Path(user_data_dir(APP)) / "demo.db"  # otel-mcp demo's own rules, never mixed into the user's (``db``)
MIN_RESULT_BYTES = 16 * 1024  # below this, one page of rule metadata (settings aside) may not fit


def _doc(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class Settings:
    transport: str = field(default="stdio", metadata=_doc("stdio or http"))
    host: str = field(default="127.0.0.1", metadata=_doc("HTTP bind address"))
    port: int = field(default=8000, metadata=_doc("HTTP port (0 picks a free one)"))
    db: Path | str = field(default=Path(user_data_dir(APP)) / "rules.db", metadata=_doc(
        "rules database: a SQLite file (or sqlite:///path), or postgresql://user:password@host:port/database"
    ))
    db_pool_size: int = field(default=10, metadata=_doc("PostgreSQL connections one server process opens at most"))
    db_timeout_ms: int = field(
        default=5000, metadata=_doc("longest wait for a database connection or for another writer's lock")
    )
    cache_dir: Path = field(default=Path(user_cache_dir(APP)) / "compositions", metadata=_doc("disk cache"))
    cache: bool = field(default=True, metadata=_doc("cache compositions (memory + disk)"))
    cache_memory_mb: int = field(default=64, metadata=_doc("memory for decoded compositions (L1)"))
    cache_disk_mb: int = field(default=512, metadata=_doc("disk for the composition cache (L2)"))
    state_dir: Path = field(default=Path(user_state_dir(APP)), metadata=_doc("logs, pid files, snapshots"))
    files_root: Path = field(default=Path.cwd(), metadata=_doc("import/export paths must stay under this"))
    read_only: bool = field(default=False, metadata=_doc("refuse every write tool"))
    max_body_bytes: int = field(default=512 * 1024, metadata=_doc("largest rule body accepted (UTF-8 bytes)"))
    max_settings_bytes: int = field(default=64 * 1024, metadata=_doc("largest rule settings accepted (JSON bytes)"))
    max_result_bytes: int = field(
        default=1000 * 1024, metadata=_doc("largest tool result or resource sent (encoded bytes; clients read 1 MiB)")
    )
    max_imports: int = field(default=64, metadata=_doc("most imports one rule may declare"))
    max_import_depth: int = field(default=5, metadata=_doc("deepest import chain composed"))
    max_rules: int = field(default=500, metadata=_doc("most rules in one composition"))
    glob_max_chars: int = field(default=512, metadata=_doc("characters in one glob pattern"))
    glob_max_wildcards: int = field(
        default=64, metadata=_doc("wildcards (*, **, ?, [...]) in one glob, counting every brace alternative")
    )
    glob_max_segments: int = field(default=32, metadata=_doc("'/'-separated segments in one glob"))
    glob_max_alternatives: int = field(default=256, metadata=_doc("patterns one glob's {a,b} braces expand to"))
    max_request_bytes: int = field(default=4 * 1024 * 1024, metadata=_doc("largest HTTP request body"))
    max_sessions: int = field(default=1000, metadata=_doc("concurrent HTTP sessions (the longest idle is evicted)"))
    session_idle_timeout_s: int = field(default=300, metadata=_doc("an HTTP session idle this long is closed"))
    max_requests_in_flight: int = field(default=256, metadata=_doc("HTTP requests served at once (then 503)"))
    max_streams: int = field(default=100, metadata=_doc("open GET and subscriptions/listen streams (then 503)"))
    request_read_timeout_s: int = field(default=10, metadata=_doc("longest wait for a request's headers or body"))
    public_hosts: str = field(default="", metadata=_doc("Host names accepted besides loopback, comma-separated"))
    allowed_origins: str = field(default="", metadata=_doc("browser Origins accepted besides our own, comma-separated"))
    allow_remote_without_auth: bool = field(
        default=False, metadata=_doc("serve a non-loopback address without a bearer token (unsafe)")
    )
    max_subscriptions: int = field(
        default=1024, metadata=_doc("resource URIs one handshake-era connection may subscribe to")
    )
    change_poll_ms: int = field(
        default=1000, metadata=_doc(
            "SQLite: how often to look for other processes' writes to notify of (0: never); PostgreSQL pushes them"
        )
    )
    auth_token: str = field(default="", metadata=_doc("bearer token required on HTTP (empty: no auth)"))
    auth_token_file: Path | None = field(default=None, metadata=_doc("file holding the bearer token"))
    log_level: str = field(default="INFO", metadata=_doc("DEBUG, INFO, WARNING or ERROR"))
    gc_young_threshold: int = field(
        default=10_000, metadata=_doc("allocations between young-generation GC passes (0: Python's 700)")
    )
    # Telemetry extras (OpenTelemetry itself is configured by the standard OTEL_* variables only).
    fastpath: str = field(
        default=FASTPATH_DEFAULT, metadata=_doc("telemetry fast paths over SDK internals: auto, on or off")
    )
    perf_log: Path | None = field(default=None, metadata=_doc("JSON performance log (default state_dir/perf.log; off)"))
    perf_log_max_bytes: int = field(default=10_000_000, metadata=_doc("rotate the performance log at this size"))
    perf_log_backups: int = field(default=5, metadata=_doc("rotated performance logs kept"))
    perf_log_flush_ms: int = field(default=250, metadata=_doc("longest wait before queued perf-log lines are written"))
    metrics_endpoint: bool = field(default=False, metadata=_doc("serve GET /metrics (Prometheus) on HTTP"))
    alert_slow_request_ms: int = field(default=1000, metadata=_doc("alert when a request takes longer"))
    alert_slow_query_ms: int = field(default=100, metadata=_doc("alert and log when a DB statement takes longer"))
    alert_min_cache_hit_percent: int = field(default=50, metadata=_doc("alert when the cache hit rate is lower"))
    alert_max_rss_mb: int = field(default=1024, metadata=_doc("alert when resident memory exceeds this"))
    # The load suite (otel-mcp perf).
    corpus_dir: Path | None = field(default=None, metadata=_doc(
        "rule corpus (.mdc files) the load suite builds workloads from (default ../shared/corpus next to the checkout)"
    ))

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Flags (``None`` means unset) win over the environment, which wins over defaults."""
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            flag = flags.get(f.name)
            env_name = ENV_PREFIX + f.name.upper()
            if flag is not None:
                values[f.name] = _coerce(f.name, f.type, flag, f"--{f.name.replace('_', '-')}")
            elif env.get(env_name, "") != "":
                values[f.name] = _coerce(f.name, f.type, env[env_name], env_name)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.transport not in ("stdio", "http"):
            raise ConfigError(f"transport must be 'stdio' or 'http', got {self.transport!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")
        for name in ("cache_memory_mb", "cache_disk_mb", "max_body_bytes", "max_settings_bytes", "max_imports",
                     "max_import_depth", "max_rules", "glob_max_chars", "glob_max_wildcards", "glob_max_segments",
                     "glob_max_alternatives", "max_request_bytes", "max_sessions", "max_subscriptions",
                     "perf_log_flush_ms", "session_idle_timeout_s", "max_requests_in_flight", "max_streams",
                     "request_read_timeout_s", "db_pool_size", "db_timeout_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_result_bytes < MIN_RESULT_BYTES:
            raise ConfigError(f"max_result_bytes must be at least {MIN_RESULT_BYTES}, got {self.max_result_bytes}")
        for name in ("gc_young_threshold", "change_poll_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.fastpath not in ("auto", "on", "off"):
            raise ConfigError(f"fastpath must be auto, on or off, got {self.fastpath!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    def bearer_token(self) -> str | None:
        """The configured token, from ``auth_token`` or the first line of ``auth_token_file``."""
        if self.auth_token:
            return self.auth_token
        if self.auth_token_file is None:
            return None
        try:
            lines = self.auth_token_file.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ConfigError(f"auth_token_file {str(self.auth_token_file)!r} cannot be read: {exc.strerror}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ConfigError(f"auth_token_file {str(self.auth_token_file)!r} is empty")
        return token


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    kind = str(kind)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if kind in ("Path", "Path | None"):
            return Path(os.path.expanduser(str(value)))
        if kind == "Path | str":
            from otel_mcp.store.backends import database_setting

            return database_setting(str(value))
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{name} (from {source}) has an invalid value {value!r}: {exc}") from None


def default_setting(name: str) -> Any:
    """The default of setting ``name``, for modules whose own defaults must agree with this table."""
    return next(f.default for f in fields(Settings) if f.name == name)


def setting_help() -> dict[str, str]:
    """Each setting's one-line help, for ``--help`` and the docs."""
    return {f.name: f.metadata.get("help", "") for f in fields(Settings)}
