"""The GitHub Actions workflow users can run in their own CI: checked by actionlint (built with ``go install``
into the stack's binary cache), and it runs ``make test`` with the caches and uploads the load report."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_mcp.loadtest import LOAD_RESULTS_DIR
from otel_mcp.stack import cache_dir
from otel_mcp.stack.installer import go_tool

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ACTIONLINT = ("github.com/rhysd/actionlint/cmd/actionlint", "v1.7.12")  # the approved version


@pytest.fixture(scope="module")
def actionlint() -> Path:
    return go_tool(*ACTIONLINT, progress=False)


def lint(actionlint: Path, workflow: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(actionlint), "-no-color", str(workflow)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_workflow_passes_actionlint(actionlint: Path, tmp_path: Path) -> None:
    result = lint(actionlint, WORKFLOW)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    broken = tmp_path / ".github" / "workflows" / "ci.yml"  # the same check rejects a mistake
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-24.04\n    needz: x"))
    rejected = lint(actionlint, broken)
    assert rejected.returncode == 1 and 'unexpected key "needz"' in rejected.stdout


def test_the_workflow_runs_make_test_with_caches_and_uploads_the_load_report(monkeypatch: pytest.MonkeyPatch) -> None:
    (job,) = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    assert [s.get("run") for s in steps if "run" in s] == ["make test"]

    cached = {line.strip() for s in steps if s.get("uses", "").startswith("actions/cache@")
              for line in s["with"]["path"].splitlines()}
    monkeypatch.delenv("OTEL_MCP_CACHE_DIR", raising=False)
    home = Path.home()
    stack_cache = "~/" + str(cache_dir().relative_to(home))  # where `otel-mcp stack install` builds
    assert {".venv", stack_cache, "~/go/pkg/mod", "~/.cache/go-build"} <= cached

    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"  # the report matters most when the gate failed
    load = LOAD_RESULTS_DIR.relative_to(ROOT)  # where scripts/test.sh's gate run writes it
    assert set(upload["with"]["path"].split()) == {f"{load}/report.html", f"{load}/results.json"}
