"""Rule files through the user's paths: the ``otel-mcp`` import/export commands and the
import_rules/export_rules tools of a real server.

Round trips run over the whole real corpus; the attacks are those a hostile client found: a
symlink planted at export's old predictable temporary name, a symlinked ``.claude`` folder,
a folder name over the file system's 255-byte limit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from otel_mcp import cli
from otel_mcp.interchange import FORMATS
from otel_mcp.store import RuleStore

pytestmark = pytest.mark.anyio

def stored_rules(db: Path) -> dict[str, dict[str, Any]]:
    """Every rule in ``db`` as the fields a caller sets (no version, etag or timestamps)."""
    store = RuleStore(db)
    try:
        return {rule.id: rule.spec.to_dict() for rule in store.snapshot()[1]}
    finally:
        store.close()


def otel_mcp(*argv: str) -> None:
    """The `otel-mcp` command's entry point, in this process (a process per command would take seconds each)."""
    assert cli.main(list(argv)) == 0, argv


def test_corpus_round_trip_through_the_cli(corpus_dir: Path, tmp_path: Path) -> None:
    """`otel-mcp export` then `otel-mcp import` into a fresh database gives every corpus rule back, field for field."""
    source = tmp_path / "source.db"
    otel_mcp("import", str(corpus_dir), "--db", str(source))
    original = stored_rules(source)
    assert len(original) == len(list(corpus_dir.glob("*.mdc")))
    for fmt in FORMATS:
        folder, copy = tmp_path / f"out-{fmt}", tmp_path / f"{fmt}.db"
        otel_mcp("export", str(folder), "--format", fmt, "--db", str(source))
        otel_mcp("import", str(folder), "--db", str(copy))
        back = stored_rules(copy)
        changed = {i: {k: (v, back[i][k]) for k, v in rule.items() if back[i][k] != v}
                   for i, rule in original.items() if i in back and back[i] != rule}
        assert (sorted(original.keys() - back.keys()), changed) == ([], {}), fmt
        assert back.keys() == original.keys(), fmt


async def test_corpus_round_trip_through_the_mcp_tools(
    stdio_params: Callable[..., StdioServerParameters], files_root: Path, corpus_dir: Path, calls: Any
) -> None:
    """Re-importing each export reports every corpus rule `unchanged`: same id, same content hash of every field."""
    shutil.copytree(corpus_dir, files_root / "corpus")
    async with Client(stdio_params()) as client:
        first = await calls.ok(client, "import_rules", {"directory": "corpus"})
        ids = sorted(f["rule_id"] for f in first["files"])
        assert first["counts"] == {"created": len(ids)} and len(ids) == len(list(corpus_dir.glob("*.mdc")))
        for fmt in FORMATS:
            await calls.ok(client, "export_rules", {"directory": f"out-{fmt}", "format": fmt})
            again = await calls.ok(client, "import_rules", {"directory": f"out-{fmt}"})
            assert again["counts"] == {"unchanged": len(ids)}, (fmt, [f for f in again["files"] if "error" in f][:3])
            assert sorted(f["rule_id"] for f in again["files"]) == ids, fmt


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the files root, where an attacker wants the export to write."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


async def export_rule_a(server: Any, calls: Any, arguments: dict[str, str]) -> Any:
    """Create rule `a` and export into the folder the attack prepared; the tool's result."""
    async with server.client() as client:
        await calls.ok(client, "create_rule", {"id": "a", "body": "mine\n"})
        return await client.call_tool("export_rules", arguments)


async def test_export_ignores_a_symlink_planted_at_the_old_temporary_name(
    http_server: Any, calls: Any, outside: Path
) -> None:
    folder = http_server.files_root / "out"
    folder.mkdir()
    # export used to write `.<name>.tmp<pid>` and follow whatever was there
    (folder / f".a.mdc.tmp{http_server.process.pid}").symlink_to(outside / "victim.mdc")
    calls.data(await export_rule_a(http_server, calls, {"directory": "out"}))
    assert list(outside.iterdir()) == []
    written = folder / "a.mdc"
    assert not written.is_symlink() and written.read_text().endswith("---\nmine\n")


async def test_export_refuses_a_symlinked_claude_folder_before_creating_anything(
    http_server: Any, calls: Any, outside: Path
) -> None:
    project = http_server.files_root / "proj"
    project.mkdir()
    (project / ".claude").symlink_to(outside, target_is_directory=True)
    result = await export_rule_a(http_server, calls, {"directory": "proj", "format": "claude"})
    assert list(outside.iterdir()) == []
    text = calls.text(result)
    assert result.is_error and "Traceback" not in text
    assert "refusing to go through 'proj/.claude': it is a symlink or not a folder" in text
    assert [p.name for p in project.iterdir()] == [".claude"]


async def test_names_over_255_bytes_are_a_clear_error(http_server: Any, calls: Any) -> None:
    long = "x" * 300
    (http_server.files_root / "sub").mkdir()
    async with http_server.client() as client:
        await calls.ok(client, "create_rule", {"id": "a", "body": "mine\n"})
        for tool in ("import_rules", "export_rules"):
            for directory in (long, f"sub/{long}/deeper"):
                text = await calls.error(client, tool, {"directory": directory})
                assert "File name too long (ENAMETOOLONG); a file or folder name is at most 255 bytes" in text, text
    assert "Traceback" not in http_server.output()
    assert [p.name for p in http_server.files_root.iterdir()] == ["sub"]
    assert list((http_server.files_root / "sub").iterdir()) == []


def test_cli_folder_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long, missing = tmp_path / ("x" * 300), tmp_path / "missing"
    for argv in (["export", str(long)], ["import", str(long)], ["import", str(missing)]):
        assert cli.main([*argv, "--db", str(tmp_path / "rules.db")]) == 1, argv
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("otel-mcp:")]
    assert [line.endswith("File name too long (ENAMETOOLONG); a file or folder name is at most 255 bytes")
            for line in errors] == [True, True, False]
    assert errors[2] == f"otel-mcp: {str(missing)!r} does not exist or is not a folder"
