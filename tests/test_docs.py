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


def test_the_perf_gate_table_quotes_the_baselines_the_gate_enforces() -> None:
    """docs/performance.md's gate table against perf/baselines/ci.json, read through the gate's own evaluation."""
    from otel_mcp.loadtest import gate

    baseline = gate.load_baseline("ci")
    scenarios: dict[str, dict[str, dict[str, float]]] = {}  # each ratio measured exactly at its baseline
    for metric, (scenario, key, _) in gate.METRICS.items():
        scenarios.setdefault(scenario, {"ratios": {}})["ratios"][key] = baseline["metrics"][metric]["value"]
    at_baseline = {"scenarios": scenarios}
    enforced = {row["metric"]: row for row in gate.evaluate(at_baseline, "ci")["rows"] if row["metric"] in gate.METRICS}
    assert enforced.keys() == baseline["metrics"].keys() == gate.METRICS.keys()

    text = (ROOT / "docs" / "performance.md").read_text()
    rows = {line.split("`")[1]: [cell.strip() for cell in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| `") and line.split("`")[1] in gate.METRICS}
    assert rows.keys() == enforced.keys(), "docs/performance.md's gate table lacks or repeats a ratio"
    for metric, row in enforced.items():
        _, quoted, fails_when = rows[metric]
        word, sign = ("below", "-") if row["direction"] == "higher" else ("above", "+")
        assert float(quoted) == row["baseline"], f"{metric}: docs {quoted}, perf/baselines/ci.json {row['baseline']}"
        assert fails_when == f"{word} {row['limit']:g} ({sign}{row['tolerance']:.0%})".replace("%", " %"), metric


def test_the_scale_out_claims_name_tests_that_exist() -> None:
    """docs/scale-out.md proves each claim with a test: every ``tests/...py::test_name`` it names must exist."""
    import re

    text = (ROOT / "docs" / "scale-out.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text)
    assert len(named) >= 6
    for path, name in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{path}::{name} (docs/scale-out.md)"
