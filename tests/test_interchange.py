"""Rule files in and out: Cursor .mdc, Claude .claude/rules/*.md, Copilot *.instructions.md, AGENTS.md."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from otel_mcp.errors import InvalidRule
from otel_mcp.interchange import confine, detect_format, export_directory, frontmatter, import_directory
from otel_mcp.interchange.confined import ConfinedFiles
from otel_mcp.interchange.formats import slug, to_fields
from otel_mcp.store import Activation, RuleStore


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_path(results: list[Any]) -> dict[str, Any]:
    return {r.path: r for r in results}


# -- front matter ---------------------------------------------------------------------


def test_front_matter_strict_yaml_and_cursor_style() -> None:
    meta, body = frontmatter.split("---\ndescription: Hello\nglobs: ['a', 'b']\n---\nBody\n")
    assert meta == {"description": "Hello", "globs": ["a", "b"]} and body == "Body\n"
    # Cursor writes unquoted globs that strict YAML rejects ('*' starts an alias)
    meta, _ = frontmatter.split("---\ndescription: x\nglobs: **/*.ts, *.tsx\nalwaysApply: false\n---\nB")
    assert meta == {"description": "x", "globs": "**/*.ts, *.tsx", "alwaysApply": False}
    meta, _ = frontmatter.split("---\nglobs: *.py\ntags: [\"a\"]\nq: 'quoted'\nn: null\n# comment\n\n---\n")
    assert meta == {"globs": "*.py", "tags": ["a"], "q": "quoted", "n": None}


def test_front_matter_edge_cases() -> None:
    assert frontmatter.split("no front matter\n") == ({}, "no front matter\n")
    assert frontmatter.split("\ufeff---\na: 1\n---\nx") == ({"a": 1}, "x")
    assert frontmatter.split("----\nnot front matter") == ({}, "----\nnot front matter")
    assert frontmatter.split("---\n---\nbody") == ({}, "body")
    with pytest.raises(InvalidRule, match="never closed"):
        frontmatter.split("---\na: 1\nbody")
    with pytest.raises(InvalidRule, match="must be a mapping"):
        frontmatter.split("---\n- a\n- b\n---\n")
    with pytest.raises(InvalidRule, match="front matter line 3 is not 'key: value'"):
        frontmatter.split("---\nglobs: *.py\nthis is not a key value line\n---\n")


def test_render_reads_back() -> None:
    meta = {"description": "a: b # c", "globs": "*.py", "tags": ["x"], "settings": {"k": [1, None]}}
    text = frontmatter.render(meta, "Body\n")
    assert frontmatter.split(text) == (meta, "Body\n")


# -- formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("a.mdc", "cursor"), ("deep/x.mdc", "cursor"), ("x.instructions.md", "copilot"),
        (".github/instructions/x.instructions.md", "copilot"), ("AGENTS.md", "agents"), ("sub/CLAUDE.md", "agents"),
        (".claude/rules/style.md", "claude"), ("README.md", None), ("notes.txt", None), ("rules/x.md", None),
    ],
)
def test_detect_format(path: str, fmt: str | None) -> None:
    assert detect_format(PurePosixPath(path)) == fmt


def test_slug() -> None:
    assert slug("My Rule: Python!") == "my-rule-python"
    assert slug("___") == "rule"
    assert len(slug("x" * 300)) == 128


@pytest.mark.parametrize(
    ("meta", "activation", "globs"),
    [
        ("alwaysApply: true\nglobs: '*.py'", "always", ["*.py"]),
        ("globs: src/**/*.ts, *.{js,jsx}", "auto", ["src/**/*.ts", "*.{js,jsx}"]),
        ("globs:\n  - a.py\n  - b.py", "auto", ["a.py", "b.py"]),
        ("description: Ask me", "agent_requested", []),
        ("description: ''", "manual", []),
    ],
)
def test_cursor_mapping(meta: str, activation: str, globs: list[str]) -> None:
    fields = to_fields(PurePosixPath("My Rule.mdc"), f"---\n{meta}\n---\n\nBody\n\n", "cursor")
    assert fields["id"] == "my-rule" and fields["activation"] == activation and fields["globs"] == globs
    assert fields["body"] == "Body\n"


def test_claude_copilot_and_agents_mappings() -> None:
    claude = to_fields(PurePosixPath(".claude/rules/tests.md"), "---\npaths: ['tests/**']\n---\nT", "claude")
    assert (claude["id"], claude["activation"], claude["globs"]) == ("tests", "auto", ["tests/**"])
    plain = to_fields(PurePosixPath(".claude/rules/all.md"), "Always\n", "claude")
    assert (plain["activation"], plain["globs"]) == ("always", [])
    cop = to_fields(PurePosixPath("py.instructions.md"), "---\napplyTo: '**/*.py,**/*.pyi'\n---\nP", "copilot")
    assert (cop["id"], cop["activation"], cop["globs"]) == ("py", "auto", ["**/*.py", "**/*.pyi"])
    everything = to_fields(PurePosixPath("all.instructions.md"), "---\napplyTo: '**'\n---\nA", "copilot")
    assert (everything["activation"], everything["globs"]) == ("always", [])
    # VS Code applies a file without applyTo only when it is attached, or picked by its description
    attached = to_fields(PurePosixPath("a.instructions.md"), "A\n", "copilot")
    assert (attached["activation"], attached["globs"]) == ("manual", [])
    described = to_fields(PurePosixPath("d.instructions.md"), "---\ndescription: When asked\n---\nD", "copilot")
    assert (described["activation"], described["globs"]) == ("agent_requested", [])
    root = to_fields(PurePosixPath("AGENTS.md"), "# Agents\n", "agents")
    assert (root["id"], root["activation"], root["globs"]) == ("agents", "always", [])
    sub = to_fields(PurePosixPath("web/app/AGENTS.md"), "# Web\n", "agents")
    assert (sub["id"], sub["activation"], sub["globs"]) == ("agents-web-app", "auto", ["web/app/**"])


def test_own_fields_in_front_matter_win() -> None:
    text = "---\nid: custom\npriority: 7\nactivation: manual\nglobs: '*.py'\ntags: [a]\nenabled: false\n---\nB"
    fields = to_fields(PurePosixPath("whatever.mdc"), text, "cursor")
    assert {k: fields[k] for k in ("id", "priority", "activation", "tags", "enabled")} == {
        "id": "custom", "priority": 7, "activation": "manual", "tags": ["a"], "enabled": False
    }


def test_bad_mappings() -> None:
    with pytest.raises(InvalidRule, match="globs must be a string or a list of strings, got int"):
        to_fields(PurePosixPath("x.mdc"), "---\nglobs: 5\n---\n", "cursor")
    with pytest.raises(InvalidRule, match="description must be a string"):
        to_fields(PurePosixPath("x.mdc"), "---\ndescription: [1]\n---\n", "cursor")
    with pytest.raises(InvalidRule, match="unknown format 'word'"):
        to_fields(PurePosixPath("x.mdc"), "x", "word")


# -- import ----------------------------------------------------------------------------


def test_import_each_format_and_report_each_file(store: RuleStore, tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "proj/python.mdc", "---\ndescription: Python\nglobs: '*.py'\n---\nPython rules\n")
    write(root / "proj/.claude/rules/testing.md", "---\npaths: ['tests/**']\n---\nTest rules\n")
    write(root / "proj/.github/instructions/ts.instructions.md", "---\napplyTo: '**/*.ts'\n---\nTS rules\n")
    write(root / "proj/AGENTS.md", "Agent rules\n")
    write(root / "proj/README.md", "not a rule\n")
    write(root / "proj/broken.mdc", "---\nglobs: '*.py'\nthis line is bad\n---\nx")
    write(root / "proj/bad-glob.mdc", "---\nglobs: 'src/{a'\n---\nx")
    (root / "proj/latin1.mdc").write_bytes(b"caf\xe9\n")
    results = by_path(import_directory(store, root, "proj"))
    assert {p: r.status for p, r in results.items()} == {
        "python.mdc": "created", ".claude/rules/testing.md": "created",
        ".github/instructions/ts.instructions.md": "created", "AGENTS.md": "created",
        "broken.mdc": "error", "bad-glob.mdc": "error", "latin1.mdc": "error",
    }
    assert "front matter line 3" in results["broken.mdc"].error
    assert "unclosed '{'" in results["bad-glob.mdc"].error
    assert results["latin1.mdc"].error == "file is not valid UTF-8"
    assert store.get("python").activation is Activation.AUTO
    assert store.get("testing").globs == ("tests/**",)
    assert store.get("agents").activation is Activation.ALWAYS
    assert results["python.mdc"].to_dict() == {"path": "python.mdc", "status": "created", "rule_id": "python",
                                               "version": 1}
    again = by_path(import_directory(store, root, "proj"))
    assert again["python.mdc"].status == "unchanged"
    write(root / "proj/python.mdc", "---\ndescription: Python\nglobs: '*.py'\n---\nPython rules v2\n")
    assert by_path(import_directory(store, root, "proj", "cursor"))["python.mdc"].status == "updated"
    assert store.get("python").version == 2


def test_import_with_explicit_format_only_reads_that_format(store: RuleStore, tmp_path: Path) -> None:
    write(tmp_path / "a.mdc", "A\n")
    write(tmp_path / "AGENTS.md", "B\n")
    write(tmp_path / ".claude/rules/c.md", "C\n")
    assert [(r.path, r.rule_id) for r in import_directory(store, tmp_path, ".", "cursor")] == [("a.mdc", "a")]
    assert [(r.path, r.rule_id) for r in import_directory(store, tmp_path, ".", "agents")] == [("AGENTS.md", "agents")]
    assert store.count() == 2


def test_import_naming_the_claude_rules_folder_itself(store: RuleStore, tmp_path: Path) -> None:
    write(tmp_path / "proj/.claude/rules/style.md", "---\npaths: ['*.py']\n---\nStyle\n")
    for fmt in ("auto", "claude"):
        results = import_directory(store, tmp_path, "proj/.claude/rules", fmt)
        assert [(r.path, r.rule_id) for r in results] == [("style.md", "style")], fmt
    assert store.get("style").globs == ("*.py",)


def test_foreign_files_are_tidied(store: RuleStore, tmp_path: Path) -> None:
    (tmp_path / "crlf.mdc").write_bytes(
        b"---\r\ndescription: '  Spaced   out '\r\n---\r\n\r\nLine one\r\nLine two\r\n\r\n"
    )
    import_directory(store, tmp_path, ".")
    rule = store.get("crlf")
    assert (rule.body, rule.description) == ("Line one\nLine two\n", "Spaced out")


def test_duplicate_ids_in_one_import_are_refused(store: RuleStore, tmp_path: Path) -> None:
    write(tmp_path / "one/style.mdc", "One\n")
    write(tmp_path / "two/style.mdc", "Two\n")
    results = by_path(import_directory(store, tmp_path, "."))
    assert results["one/style.mdc"].status == "created"
    assert results["two/style.mdc"].status == "error"
    assert "rule id 'style' is also produced by one/style.mdc" in results["two/style.mdc"].error
    assert store.get("style").body == "One\n"


def test_import_refuses_paths_outside_the_root(store: RuleStore, tmp_path: Path, db_path: Path,
                                               db_state: Any) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    write(outside / "secret.mdc", "secret\n")
    write(root / "ok/fine.mdc", "fine\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "ok/sneaky.mdc").symlink_to(outside / "secret.mdc")
    before = db_state(db_path)
    for directory in ("..", "../outside", "/", str(outside), "ok/../../outside", "link"):
        with pytest.raises(InvalidRule, match="is outside the allowed root"):
            import_directory(store, root, directory)
    with pytest.raises(InvalidRule, match="does not exist under the allowed root"):
        import_directory(store, root, "nothing-here")
    with pytest.raises(InvalidRule, match="format 'word' is not one of"):
        import_directory(store, root, "ok", "word")
    assert db_state(db_path) == before
    results = by_path(import_directory(store, root, "ok"))
    assert results["sneaky.mdc"].status == "error"
    assert results["sneaky.mdc"].error == "symlink points outside the allowed root"
    assert results["fine.mdc"].status == "created"
    with pytest.raises(Exception, match="does not exist"):
        store.get("sneaky")


def test_confine() -> None:
    root = Path("/srv/rules")
    assert confine(root, ".") == root.resolve()
    assert confine(root, "a/b") == root.resolve() / "a" / "b"
    for bad in ("..", "../x", "/etc", "a/../../x"):
        with pytest.raises(InvalidRule, match="outside the allowed root"):
            confine(root, bad)
    with pytest.raises(InvalidRule, match="directory must be a path string"):
        confine(root, "a\x00b")


# -- export and round trip -----------------------------------------------------------------------


RULES: list[dict[str, Any]] = [
    {"id": "always-on", "body": "Always.\n", "activation": "always", "description": "Applies: always", "priority": 3},
    {"id": "py", "body": "No trailing newline", "activation": "auto", "globs": ["src/**/*.py", "*.{py,pyi}"],
     "exclude_globs": ["**/gen/**"], "tags": ["python", "agent:claude"],
     "settings": {"indent": 4, "nested": {"a": [1]}}},
    {"id": "asked", "body": "\n\nLeading blank lines.\n\n\n", "activation": "agent_requested",
     "description": "  Two  spaces  "},
    {"id": "manual.one", "body": "---\nlooks like front matter\n---\n", "imports": ["py"], "overrides": ["asked"]},
    {"id": "off", "body": "Disabled.\n", "activation": "manual", "enabled": False, "description": "yes"},
    {"id": "unicode", "body": "Ünïcødé ✓ — 日本語\r\nWindows line\r\n", "description": "émoji 🎉"},
    # what a tool's own keys cannot say: Copilot reads applyTo '**/*' as "always", Cursor splits on top-level commas
    {"id": "every-file", "body": "All files.\n", "activation": "auto", "globs": ["**/*"]},
    {"id": "always-globbed", "body": "x\n", "activation": "always", "globs": ["src/**", "**"], "priority": -2},
    # an AGENTS.md marker is an HTML comment: '-->' in a field must not end it, nor a quoted marker split a body
    {"id": "quoting", "description": "a --> b > c", "tags": ["<!--", "-->"],
     "body": 'Markers look like this:\n<!-- otel-mcp:rule {"id":"fake"} -->\nend\n'},
]


@pytest.mark.parametrize("fmt", ["cursor", "claude", "copilot", "agents"])
def test_export_then_import_into_a_fresh_db_gives_identical_etags(tmp_path: Path, fmt: str) -> None:
    source = RuleStore(tmp_path / "source.db")
    fresh = RuleStore(tmp_path / "fresh.db")
    try:
        for r in RULES:
            source.create(r)
        written = export_directory(source, tmp_path, "export", fmt)
        assert all(r.status == "written" for r in written)
        results = import_directory(fresh, tmp_path, "export")
        assert [r.error for r in results if r.status != "created"] == []
        # AGENTS.md leaves disabled rules out: an agent reads the whole file as instructions
        original = {r.id: r.etag for r in source.snapshot()[1] if r.enabled or fmt != "agents"}
        copied = {r.id: r.etag for r in fresh.snapshot()[1]}
        mismatched = {i: (source.get(i).to_dict(), fresh.get(i).to_dict()) for i in original
                      if original[i] != copied.get(i)}
        assert mismatched == {}
    finally:
        source.close()
        fresh.close()


def test_export_agents_md(store: RuleStore, tmp_path: Path) -> None:
    for r in RULES:
        store.create(r)
    assert [r.path for r in export_directory(store, tmp_path, "out", "agents")] == ["AGENTS.md"]
    text = (tmp_path / "out/AGENTS.md").read_bytes().decode()
    assert text.startswith(
        '<!-- otel-mcp:rule {"id":"always-globbed","activation":"always","globs":["src/**","**"],"priority":-2} -->\n'
        "x\n\n"
        '<!-- otel-mcp:rule {"id":"always-on","description":"Applies: always","activation":"always","priority":3} -->\n'
        "Always.\n\n"
    )
    assert '{"id":"quoting","description":"a --\\u003e b \\u003e c","tags":["<!--","--\\u003e"],"lines":4} -->' in text
    assert "Disabled." not in text
    assert text.endswith("Windows line\r\n\n")


def test_agents_md_sections(store: RuleStore, tmp_path: Path) -> None:
    """Text before the first marker stays a rule of its own; a broken marker fails that file, named by line."""
    write(tmp_path / "a/AGENTS.md", '# Team notes\n\n<!-- otel-mcp:rule {"id":"one","activation":"always"} -->\nOne\n')
    write(tmp_path / "b/AGENTS.md", 'Intro\n<!-- otel-mcp:rule {"id":"two",} -->\nTwo\n')
    write(tmp_path / "c/AGENTS.md", '<!-- otel-mcp:rule {"id":"three","body":"sneaky"} -->\nThree\n')
    results = [(r.path, r.status, r.rule_id, r.error) for r in import_directory(store, tmp_path, ".")]
    assert results[:2] == [("a/AGENTS.md", "created", "agents-a", None), ("a/AGENTS.md", "created", "one", None)]
    assert results[2][:2] == ("b/AGENTS.md", "error") and "rule marker on line 2 is not valid JSON" in results[2][3]
    assert results[3][:2] == ("c/AGENTS.md", "error")
    assert "must be a JSON object of rule fields, no 'body'" in results[3][3]
    # the line break after a section separates it from the next: it is not part of the body
    assert (store.get("agents-a").body, store.get("one").body) == ("# Team notes\n", "One")
    assert store.count() == 2


def test_export_refuses_escapes(store: RuleStore, tmp_path: Path) -> None:
    store.create({"id": "a", "body": "x"})
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    for directory in ("..", "../outside", "link", str(outside)):
        with pytest.raises(InvalidRule, match="is outside the allowed root"):
            export_directory(store, root, directory)
    with pytest.raises(InvalidRule, match="format 'auto' is not one of: cursor, claude, copilot, agents"):
        export_directory(store, root, "out", "auto")
    # a symlinked target file inside the export folder is not followed
    (root / "out").mkdir()
    (root / "out/a.mdc").symlink_to(outside / "victim.mdc")
    with pytest.raises(InvalidRule, match=r"refusing to write 'out/a\.mdc': it is a symlink"):
        export_directory(store, root, "out")
    assert list(outside.iterdir()) == []


def test_export_checks_every_path_before_writing_any(store: RuleStore, tmp_path: Path) -> None:
    store.create({"id": "a", "body": "x"})
    store.create({"id": "b", "body": "y"})
    (tmp_path / "proj/.github/instructions/b.instructions.md").mkdir(parents=True)
    with pytest.raises(InvalidRule, match=r"refusing to write 'proj/\.github/instructions/b\.instructions\.md'"):
        export_directory(store, tmp_path, "proj", "copilot")
    assert os.listdir(tmp_path / "proj/.github/instructions") == ["b.instructions.md"]


def test_confined_files_follow_no_symlink_even_unchecked(tmp_path: Path) -> None:
    """``write`` and ``read`` walk with O_NOFOLLOW themselves: a symlink swapped in after a check is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a/b").symlink_to(outside, target_is_directory=True)
    write(outside / "secret.md", "secret")
    (root / "a/link.md").symlink_to(outside / "secret.md")
    os.mkfifo(root / "a/fifo.md")
    files = ConfinedFiles(root)
    for relative in ("a/b/c/x.md", "a/b/x.md", "a/b/secret.md"):
        with pytest.raises(InvalidRule, match="refusing to go through 'a/b': it is a symlink or not a folder"):
            files.write(PurePosixPath(relative), "text")
        with pytest.raises(InvalidRule, match="refusing to go through 'a/b': it is a symlink or not a folder"):
            files.read(PurePosixPath(relative), 100)
    with pytest.raises(InvalidRule, match=r"refusing to read 'a/link\.md': it is a symlink"):
        files.read(PurePosixPath("a/link.md"), 100)
    with pytest.raises(InvalidRule, match=r"refusing to read 'a/fifo\.md': it is not a regular file"):
        files.read(PurePosixPath("a/fifo.md"), 100)  # and does not wait for a writer to open the FIFO
    with pytest.raises(InvalidRule, match="not a plain relative path"):
        files.write(PurePosixPath("a/../x.md"), "text")
    assert os.listdir(outside) == ["secret.md"]
    files.write(PurePosixPath("a/new/x.md"), "text")
    assert (root / "a/new/x.md").read_text() == "text" and os.listdir(root / "a/new") == ["x.md"]
    assert files.read(PurePosixPath("a/new/x.md"), 4) == b"text"
    with pytest.raises(InvalidRule, match="file is larger than 3 bytes"):
        files.read(PurePosixPath("a/new/x.md"), 3)


def test_import_reports_symlink_loops_per_file(store: RuleStore, tmp_path: Path) -> None:
    (tmp_path / "self.mdc").symlink_to("self.mdc")
    (tmp_path / "a.mdc").symlink_to("b.mdc")
    (tmp_path / "b.mdc").symlink_to("a.mdc")
    write(tmp_path / "fine.mdc", "fine\n")
    (tmp_path / "loop").symlink_to("loop", target_is_directory=True)
    results = by_path(import_directory(store, tmp_path, "."))
    assert {p: r.status for p, r in results.items()} == {"a.mdc": "error", "b.mdc": "error", "fine.mdc": "created",
                                                        "self.mdc": "error"}
    assert all("it is a symlink" in results[p].error for p in ("a.mdc", "b.mdc", "self.mdc"))
    with pytest.raises(InvalidRule, match="does not exist under the allowed root"):
        import_directory(store, tmp_path, "loop")


def test_export_overwrites_atomically(store: RuleStore, tmp_path: Path) -> None:
    store.create({"id": "a", "body": "one\n"})
    export_directory(store, tmp_path, "out")
    store.update("a", 1, {"body": "two\n"})
    export_directory(store, tmp_path, "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["a.mdc"]
    assert (tmp_path / "out/a.mdc").read_text().endswith("---\ntwo\n")


def test_corpus_imports_cleanly(store: RuleStore, corpus_dir: Path) -> None:
    results = import_directory(store, corpus_dir.parent, corpus_dir.name)
    errors = [(r.path, r.error) for r in results if r.status == "error"]
    assert errors == []
    assert len(results) == len(list(corpus_dir.glob("*.mdc"))) == store.count()
    for rule in store.snapshot()[1]:
        assert rule.body.endswith("\n") and (rule.body == "\n" or not rule.body.startswith("\n"))
