"""The load suite's own logic: histogram math, Zipf determinism, gate verdicts, wire validation, leak detection,
plus one short real-server smoke run of the runner. No absolute-time assertions: targets live in perf/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from otel_mcp.loadtest import gate, runner
from otel_mcp.loadtest.loadgen.hist import LatencyRecorder, summarize
from otel_mcp.loadtest.loadgen.wire import WireValidator, parse_body
from otel_mcp.loadtest.loadgen.zipf import Zipf
from otel_mcp.loadtest.scenarios.ramp import find_knee
from otel_mcp.loadtest.scenarios.soak import leak_checks, slope


def test_histogram_percentiles_are_within_hdr_precision() -> None:
    rec = LatencyRecorder(window_s=1.0)
    for i in range(1, 10001):  # 1..10000 ms, uniformly
        rec.record(at_s=i / 5000, latency_s=i / 1000)
    s = summarize(rec.total)
    assert s["count"] == 10000
    for key, expected in (("p50_ms", 5000), ("p90_ms", 9000), ("p99_ms", 9900), ("p99.9_ms", 9990)):
        assert abs(s[key] - expected) / expected < 0.002, (key, s[key])
    assert abs(s["max_ms"] - 10000) / 10000 < 0.002
    assert [w["t"] for w in rec.timeline()] == [0.0, 1.0, 2.0]
    assert sum(w["count"] for w in rec.timeline()) == 10000


def test_histogram_merge_and_errors() -> None:
    a, b = LatencyRecorder(), LatencyRecorder()
    a.record(0.1, 0.010)
    b.record(1.5, 0.020)
    b.error("timeout")
    b.error("timeout")
    a.merge(b)
    assert a.ok == 2 and a.total.get_total_count() == 2 and a.errors == {"timeout": 2}
    assert sorted(a.windows) == [0, 1]


def test_zipf_is_deterministic_and_skewed() -> None:
    first = Zipf(200, 1.1, seed=7).samples(5000)
    assert first == Zipf(200, 1.1, seed=7).samples(5000)
    assert first != Zipf(200, 1.1, seed=8).samples(5000)
    assert all(0 <= x < 200 for x in first)
    counts = [first.count(k) for k in range(5)]
    assert counts[0] > counts[1] > counts[2] > counts[4]
    z = Zipf(200, 1.1, seed=1)
    assert abs(sum(z.probability(k) for k in range(200)) - 1.0) < 1e-9
    assert abs(first.count(0) / 5000 - z.probability(0)) < 0.03


def _results(**ratios: float) -> dict[str, Any]:
    ref = {k: v for k, v in ratios.items() if "echo" in k}
    tel = {k: v for k, v in ratios.items() if "telemetry" in k}
    return {"scenarios": {"reference": {"status": "pass", "ratios": ref},
                          "telemetry-overhead": {"status": "pass", "ratios": tel},
                          "concurrent-updates": {"status": "pass", "checks": []}}}


BASE = {"metrics": {"compose_vs_echo_throughput": {"value": 0.5, "tolerance": 0.3},
                    "compose_vs_echo_p99": {"value": 2.0, "tolerance": 1.0},
                    "telemetry_on_vs_off_throughput": 0.9}}


def test_gate_passes_within_tolerance() -> None:
    verdict = gate.evaluate(_results(compose_vs_echo_throughput=0.40, compose_vs_echo_p99=3.9,
                                     telemetry_on_vs_off_throughput=0.7), "ci", BASE)
    assert verdict["passed"], gate.format_gate(verdict)


def test_gate_fails_on_throughput_and_latency_regressions() -> None:
    slow = gate.evaluate(_results(compose_vs_echo_throughput=0.30, compose_vs_echo_p99=2.0), "ci", BASE)
    assert not slow["passed"]
    assert [r["metric"] for r in slow["rows"] if not r["ok"]] == ["compose_vs_echo_throughput"]
    tail = gate.evaluate(_results(compose_vs_echo_throughput=0.5, compose_vs_echo_p99=4.5), "ci", BASE)
    assert [r["metric"] for r in tail["rows"] if not r["ok"]] == ["compose_vs_echo_p99"]
    assert "REGRESSION" in gate.format_gate(tail)


def test_gate_fails_when_a_correctness_scenario_fails() -> None:
    results = _results(compose_vs_echo_throughput=0.5)
    results["scenarios"]["concurrent-updates"] = {"status": "fail", "checks": [{"name": "no lost update", "ok": False}]}
    verdict = gate.evaluate(results, "ci", BASE)
    assert not verdict["passed"]


def test_baseline_update_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "BASELINE_DIR", tmp_path)
    path = gate.write_baseline(_results(compose_vs_echo_throughput=0.42, telemetry_on_vs_off_throughput=0.95), "ci")
    stored = json.loads(path.read_text())
    assert stored["metrics"]["compose_vs_echo_throughput"]["value"] == 0.42
    assert gate.evaluate(_results(compose_vs_echo_throughput=0.42), "ci")["passed"]
    assert not gate.evaluate(_results(compose_vs_echo_throughput=0.2), "ci")["passed"]


REQ = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
       "params": {"name": "get_rule", "arguments": {"id": "a"},
                  "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                            "io.modelcontextprotocol/clientCapabilities": {},
                            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}}
GOOD = {"jsonrpc": "2.0", "id": 3, "result": {"content": [{"type": "text", "text": "{}"}], "isError": False,
                                              "resultType": "complete"}}


def _sse(*messages: dict[str, Any]) -> bytes:
    return "".join(f"event: message\ndata: {json.dumps(m)}\n\n" for m in messages).encode()


def test_wire_validator_accepts_a_good_exchange() -> None:
    v = WireValidator()
    v.exchange(json.dumps(REQ).encode(), "2026-07-28", "text/event-stream", 200, _sse(GOOD))
    v.exchange(json.dumps(REQ).encode(), "2026-07-28", "application/json", 200, json.dumps(GOOD).encode())
    assert v.violations == [] and v.responses == 2


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        ({**GOOD, "id": 4}, "id-mismatch"),
        ({"jsonrpc": "2.0", "id": 3, "result": {"content": "not a list"}}, "schema"),
        ({"jsonrpc": "1.0", "id": 3, "result": {}}, "envelope"),
        ({"jsonrpc": "2.0", "id": 3, "result": {}, "error": {"code": 1, "message": "x"}}, "envelope"),
        ({"jsonrpc": "2.0", "id": 3, "error": {"code": "bad", "message": 5}}, "schema"),
    ],
)
def test_wire_validator_catches_bad_messages(response: dict[str, Any], kind: str, tmp_path: Path) -> None:
    v = WireValidator()
    v.exchange(json.dumps(REQ).encode(), "2026-07-28", "text/event-stream", 200, _sse(response))
    assert kind in {x["kind"] for x in v.violations}, v.violations
    saved = v.save(tmp_path)
    assert saved and json.loads(saved[0].read_text())["message"]


def test_wire_validator_catches_unanswered_and_bad_requests() -> None:
    v = WireValidator()
    v.exchange(json.dumps(REQ).encode(), "2026-07-28", "text/event-stream", 200, b"")
    assert [x["kind"] for x in v.violations] == ["id-mismatch"]
    bad = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"arguments": {}}}
    w = WireValidator()
    w.exchange(json.dumps(bad).encode(), "2026-07-28", "application/json", 200,
               json.dumps({**GOOD, "id": 1}).encode())
    assert "schema" in {x["kind"] for x in w.violations}


def test_parse_body_reports_broken_json() -> None:
    items = parse_body("text/event-stream", b"data: {not json}\n\n")
    assert isinstance(items[0], ValueError)


def test_leak_detection() -> None:
    flat = [{"t": i * 0.5, "rss_mb": 100.0 + (i % 3), "fds": 20.0} for i in range(80)]
    checks, _ = leak_checks(flat, [])
    assert all(c["ok"] for c in checks)
    growing = [{"t": i * 0.5, "rss_mb": 100.0 + 2 * i, "fds": 20.0 + i} for i in range(80)]
    checks, figures = leak_checks(growing, [])
    assert {c["name"] for c in checks if not c["ok"]} == {"no sustained RSS growth", "no fd growth"}
    assert figures["rss_slope_mb_per_min"] > 0
    assert abs(slope([(0, 1), (1, 3), (2, 5)]) - 2.0) < 1e-9


def test_knee_is_highest_sustained_rate() -> None:
    def step(rate: float, ok: int, p99: float) -> dict[str, Any]:
        return {"offered_rps": rate, "duration_s": 1.0, "ok": ok, "sent": int(rate), "error_count": 0,
                "latency": {"p99_ms": p99}}

    steps = [step(10, 10, 20), step(20, 20, 40), step(40, 30, 900), step(80, 31, 4000)]
    assert find_knee(steps, 250) == 20
    assert find_knee(steps[2:], 250) is None


def test_registry_lists_every_scenario() -> None:
    registry = runner.load_registry()
    for name in runner.DEFAULT_ORDER:
        assert name in registry, name
    assert set(gate.GATE_SCENARIOS) <= set(registry)


@pytest.mark.slow
def test_runner_smoke_against_a_real_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny real run: server process + SDK clients, concurrent-updates on 200 rules, report written."""
    from otel_mcp.loadtest.scenarios import common

    monkeypatch.setitem(common.PROFILES, "smoke", {**common.PROFILES["ci"], "rules": 200, "duration": 2.0,
                                                   "updaters": 4, "stdio_procs": 1, "update_rules": 2})
    monkeypatch.setenv("OTEL_MCP_PERF_CACHE", str(tmp_path / "cache"))
    results = runner.run(["concurrent-updates"], "smoke", tmp_path / "out", progress=False)
    result = results["scenarios"]["concurrent-updates"]
    assert result["status"] == "pass", result
    assert result["writes"] > 0
    from otel_mcp.loadtest.report import write_report

    report = write_report(results, tmp_path / "out")
    assert "concurrent-updates" in report.read_text()
    assert (tmp_path / "out" / "results.json").exists()


def test_load_client_expires_idle_connections_before_the_server_drops_them() -> None:
    """httpx2 and uvicorn both default to 5 s: a connection idle ~5 s raced the server's close (reference arms)."""
    import uvicorn

    from otel_mcp.loadtest.loadgen.engine import KEEPALIVE_EXPIRY_S, http_transport

    assert uvicorn.Config(app=None).timeout_keep_alive / 2 > KEEPALIVE_EXPIRY_S
    assert http_transport()._pool._keepalive_expiry == KEEPALIVE_EXPIRY_S


class _FailingPost:
    """An httpx2 transport whose ``fail_at``-th ``tools/call`` POST dies like a connection the server dropped."""

    def __init__(self, fail_at: int) -> None:
        import httpx2

        from otel_mcp.loadtest.loadgen.engine import http_transport

        self.inner = http_transport()
        self.fail_at = fail_at
        self.calls = 0
        self.error = httpx2.RemoteProtocolError

    async def handle_async_request(self, request: Any) -> Any:
        if request.method == "POST" and b'"tools/call"' in request.content:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error("Server disconnected without sending a response.", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.slow
def test_a_failed_post_is_one_counted_error_not_a_crashed_run() -> None:
    """mcp 2.3.0 lets a POST's httpx2 error escape into the transport task group: the run was cancelled and the
    pool's close raised an ExceptionGroup (the perf gate's harness crash). It must be one ``transport:`` error."""
    import random

    import anyio
    import httpx2

    from otel_mcp.loadtest.loadgen.engine import PoolConfig, closed_loop, load_http_client, open_pool
    from otel_mcp.loadtest.loadgen.server import ServerProcess
    from otel_mcp.loadtest.scenarios.reference import _echo

    failing: list[_FailingPost] = []

    def factory() -> httpx2.AsyncClient:
        failing.append(_FailingPost(fail_at=3))
        return load_http_client(failing[-1])  # type: ignore[arg-type]

    def picker(rng: random.Random) -> tuple[str, Any]:
        return "echo", _echo

    async def main(url: str) -> dict[str, Any]:
        async with open_pool(PoolConfig(url=url, http_sessions=2, http_client_factory=factory)) as pool:
            return await closed_loop(pool, picker, concurrency=2, duration=60.0, seed=1, max_requests=20,
                                     progress=False)

    with ServerProcess(kind="echo") as echo:
        result = anyio.run(main, echo.url)
    assert result["errors"] == {"transport:RemoteProtocolError": 2}, result["errors"]
    assert result["ok"] == 18 and result["sent"] == 20


def test_the_corpus_is_found_beside_the_checkout_or_by_setting_and_a_fallback_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_mcp.loadtest.loadgen import corpus

    monkeypatch.delenv("OTEL_MCP_CORPUS_DIR", raising=False)
    checkout = Path(__file__).resolve().parents[2]
    assert corpus.corpus_folder() == checkout.parent / "shared" / "corpus" / "awesome-cursorrules" / "rules"

    chosen = tmp_path / "my-rules"
    chosen.mkdir()
    for name in ("alpha", "beta"):
        (chosen / f"{name}.mdc").write_text(f"---\ndescription: {name} rule\n---\n# {name}\n\nUse {name}.\n")
    monkeypatch.setenv("OTEL_MCP_CORPUS_DIR", str(chosen))
    assert [(d.stem, d.description) for d in corpus.load_corpus()] == [("alpha", "alpha rule"), ("beta", "beta rule")]
    assert capsys.readouterr().err == ""

    corpus._say_fallback.cache_clear()
    monkeypatch.setenv("OTEL_MCP_CORPUS_DIR", str(tmp_path / "absent"))
    docs = corpus.load_corpus()
    assert len(corpus.build_rules(20, seed=1)) == 20  # the workload still builds, from the shipped samples
    assert [d.stem for d in docs] == sorted(p.stem for p in (checkout / "otel_mcp" / "samples").glob("*.mdc"))
    assert capsys.readouterr().err.splitlines() == [  # once per run, however often the corpus is read
        f"otel-mcp perf: no .mdc rules in {tmp_path / 'absent'} (set OTEL_MCP_CORPUS_DIR to the corpus); "
        "workloads are built from the sample rules shipped with otel-mcp"]
