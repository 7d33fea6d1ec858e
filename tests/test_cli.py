"""The ``otel-mcp`` command line: serve, import, export, settings and their errors."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_process import HttpServer, free_port

from otel_mcp import __version__
from otel_mcp.cli import main
from otel_mcp.store import RuleStore
from otel_mcp.store.schema import SCHEMA_VERSION


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_import_and_export_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "rules.db"
    write(tmp_path / "in/a.mdc", "---\ndescription: A\nalwaysApply: true\n---\nAlpha\n")
    write(tmp_path / "in/b.mdc", "---\nglobs: '*.py'\n---\nBeta\n")
    assert main(["import", str(tmp_path / "in"), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "created   a.mdc  -> a@1" in out and f"2 imported, 0 failed, into {db}" in out
    assert main(["export", str(tmp_path / "out"), "--db", str(db), "--format", "claude"]) == 0
    assert "2 file(s) written to" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out/.claude/rules").iterdir()) == ["a.md", "b.md"]
    # and back: the export imports unchanged into the same database
    assert main(["import", str(tmp_path / "out"), "--db", str(db)]) == 0
    assert capsys.readouterr().out.count("unchanged") == 2


def test_import_with_a_bad_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "in/good.mdc", "Good\n")
    write(tmp_path / "in/bad.mdc", "---\nglobs: '{oops'\n---\nBad\n")
    assert main(["import", str(tmp_path / "in"), "--db", str(tmp_path / "r.db")]) == 1
    out = capsys.readouterr().out
    assert "error     bad.mdc  (glob '{oops' has an unclosed '{')" in out
    assert "1 imported, 1 failed" in out


def test_import_of_a_missing_folder_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "nope"), "--db", str(tmp_path / "r.db")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bad_setting_from_env_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_MCP_LOG_LEVEL", "LOUD")
    assert main(["import", str(tmp_path), "--db", str(tmp_path / "r.db")]) == 2
    assert "configuration error: log_level must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'" in capsys.readouterr().err


def test_newer_database_is_refused_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "future.db"
    RuleStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    assert main(["export", str(tmp_path / "out"), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "newer than this otel-mcp supports" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--port", "eighty"], {}, "port (from --port) has an invalid value 'eighty'"),
        (["serve", "--port", "70000"], {}, "port must be between 0 and 65535, got 70000"),
        (["serve"], {"OTEL_MCP_MAX_BODY_BYTES": "0"}, "max_body_bytes must be at least 1, got 0"),
        (["serve"], {"OTEL_MCP_READ_ONLY": "perhaps"}, "read_only (from OTEL_MCP_READ_ONLY) has an invalid value"),
        (["serve"], {"OTEL_MCP_TRANSPORT": "pigeon"}, "transport must be 'stdio' or 'http', got 'pigeon'"),
        (["serve", "--log-level", "chatty"], {}, "log_level must be DEBUG, INFO, WARNING or ERROR"),
        (["import", "."], {"OTEL_MCP_MAX_IMPORTS": "x"}, "max_imports (from OTEL_MCP_MAX_IMPORTS)"),
    ],
)
def test_bad_config_exits_2_naming_the_setting(
    run_cli: Callable[..., Any], tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = run_cli(*args, "--db", str(tmp_path / "r.db"), env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.db").exists() or args[0] != "serve"


def test_bad_flag_choice_exits_2(run_cli: Callable[..., Any]) -> None:
    result = run_cli("serve", "--transport", "pigeon", timeout=60)
    assert result.returncode == 2 and "--transport" in result.stderr and "invalid choice" in result.stderr


def test_serve_stdio_answers_and_exits_on_eof(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    """A client that just closes stdin: the server exits cleanly (exit code 0) and created its database."""
    db = tmp_path / "data" / "rules.db"
    result = run_cli("serve", "--db", str(db), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert db.exists()


def test_cli_subprocess_import_export(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    write(tmp_path / "in/x.instructions.md", "---\napplyTo: '**/*.ts'\n---\nTS\n")
    db = str(tmp_path / "r.db")
    result = run_cli("import", str(tmp_path / "in"), "--db", db)
    assert result.returncode == 0, result.stderr
    assert "created   x.instructions.md  -> x@1" in result.stdout
    result = run_cli("export", str(tmp_path / "out"), "--db", db, "--format", "copilot")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/.github/instructions/x.instructions.md").exists()


def test_the_demo_keeps_its_samples_out_of_the_users_rules(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "data"
    users = tmp_path / "mine.db"
    RuleStore(users).close()
    env = {"XDG_DATA_HOME": str(data), "OTEL_MCP_DB": str(users)}  # the user's rules database, by the setting
    demo = run_cli("demo", "--no-stack", "--duration", "0", "--port", str(free_port()), env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    own = data / "otel-mcp" / "demo.db"
    assert f"==> rules database: {own} (4 sample rules imported)" in demo.stdout
    for path, has_rules in ((own, True), (users, False)):  # the samples plus the workload's rule, or nothing
        store = RuleStore(path)
        try:
            assert bool(store.count()) is has_rules, path
        finally:
            store.close()
    assert not (data / "otel-mcp" / "rules.db").exists()

    chosen = tmp_path / "chosen.db"
    again = run_cli("demo", "--no-stack", "--duration", "0", "--port", "0", "--db", str(chosen), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"==> rules database: {chosen} (4 sample rules imported)" in again.stdout
    # --port 0 means any free port: the links name the one chosen
    assert re.search(r"otel-mcp stats --url http://127\.0\.0\.1:[1-9]\d*\n", again.stdout), again.stdout


def test_the_demo_refuses_a_taken_port_instead_of_using_whatever_answers(
    run_cli: Callable[..., Any], http_server: HttpServer, tmp_path: Path
) -> None:
    demo = run_cli("demo", "--no-stack", "--duration", "0", "--port", str(http_server.port),
                   env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert demo.returncode == 1
    assert demo.stderr.strip().splitlines() == [
        f"otel-mcp: 127.0.0.1:{http_server.port} is already in use (another otel-mcp?): "
        "choose another port with --port"]
    store = RuleStore(http_server.db)  # the server already there got none of the demo's writes
    try:
        assert store.count() == 0
    finally:
        store.close()
