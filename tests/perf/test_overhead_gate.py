"""The telemetry overhead gate's verdict: its self-test and its tolerance (the measurement runs in the gate)."""

from __future__ import annotations

from otel_mcp.loadtest.overhead_gate import TOLERANCE, verdict

QUIET = {"off+same": 1.01, "off+burn": 1.11}


def test_within_tolerance_of_the_baseline_passes() -> None:
    assert verdict({**QUIET, "all": 1.18 * (1 + TOLERANCE) - 0.001}, 1.18)["passed"]


def test_a_ten_percent_regression_fails() -> None:
    result = verdict({**QUIET, "all": 1.18 * 1.10}, 1.18)
    assert not result["passed"]
    assert [row["check"] for row in result["rows"] if not row["ok"]] == ["telemetry_on_vs_off_server_cpu"]


def test_a_run_that_cannot_tell_ten_percent_from_noise_fails() -> None:
    noisy = verdict({"off+same": 1.07, "off+burn": 1.12, "all": 1.18}, 1.18)
    blind = verdict({"off+same": 1.00, "off+burn": 1.03, "all": 1.18}, 1.18)
    assert not noisy["passed"] and not blind["passed"]
    assert [r["check"] for r in noisy["rows"] if not r["ok"]] == ["same vs same"]
    assert [r["check"] for r in blind["rows"] if not r["ok"]] == ["injected +10% CPU is caught"]


def test_without_a_baseline_only_the_self_test_decides() -> None:
    assert verdict({**QUIET, "all": 3.0}, None)["passed"]
