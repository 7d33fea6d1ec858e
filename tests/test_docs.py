"""Documentation that must not drift from the code."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from otel_mcp.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for f in fields(Settings):
        assert f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` |" in text, f"docs/configuration.md lacks {f.name}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
