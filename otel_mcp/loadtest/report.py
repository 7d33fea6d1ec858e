"""The HTML report of a run: a verdict table at the top, then plots (PNG and SVG, matplotlib).

Plots: latency percentiles over time (one panel per scenario), ramp throughput
and p99 vs offered rate with the knee, latency CDFs, server RSS over time,
telemetry on vs off, and otel-mcp vs the raw SDK reference. Everything is
written next to ``results.json``: ``report.html`` and ``plots/*.png|svg``.
``python -m otel_mcp.loadtest.report results.json`` re-renders a saved run.
"""

from __future__ import annotations

import html
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from otel_mcp.loadtest import LOAD_RESULTS_DIR

COLORS = {"p50_ms": "#2b8cbe", "p90_ms": "#7bccc4", "p99_ms": "#e34a33", "p99.9_ms": "#7f0000"}


def _save(fig: Figure, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    plt.close(fig)
    return f"plots/{name}.png"


def _timeline_runs(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    runs = []
    for name, r in results["scenarios"].items():
        phases = r.get("phases") or {}
        phase = phases.get("open") or phases.get("closed")
        if isinstance(phase, dict) and phase.get("timeline"):
            runs.append((name, phase["timeline"]))
    return runs


def plot_timelines(results: dict[str, Any], folder: Path) -> str | None:
    runs = _timeline_runs(results)
    if not runs:
        return None
    cols = 2 if len(runs) > 1 else 1
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, timeline) in zip(axes.flat, runs, strict=False):
        t = [w["t"] for w in timeline]
        for key in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms"):
            ax.plot(t, [w[key] for w in timeline], label=key.replace("_ms", ""), color=COLORS[key], lw=1.5)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("latency (ms)")
        ax2 = ax.twinx()
        ax2.bar(t, [w["rps"] for w in timeline], width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 0.8, alpha=0.15,
                color="grey")
        ax2.set_ylabel("req/s", color="grey")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    axes.flat[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Latency percentiles over time (bars: completed req/s)")
    fig.tight_layout()
    return _save(fig, folder, "latency_over_time")


def plot_cdf(results: dict[str, Any], folder: Path) -> str | None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = 0
    for name, r in results["scenarios"].items():
        phases = r.get("phases") or {}
        phase = phases.get("open") or phases.get("closed")
        points = phase.get("cdf") if isinstance(phase, dict) else None
        if points:
            ax.plot([p[1] for p in points], [p[0] for p in points], marker=".", label=name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("percentile")
    ax.set_title("Latency CDF per scenario")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, folder, "latency_cdf")


def plot_ramp(results: dict[str, Any], folder: Path) -> str | None:
    ramp = results["scenarios"].get("ramp")
    if not ramp or not ramp.get("steps"):
        return None
    steps = ramp["steps"]
    offered = [s["offered_rps"] for s in steps]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(offered, offered, ls="--", color="grey", label="offered (ideal)")
    ax.plot(offered, [s["throughput_rps"] for s in steps], marker="o", color="#2b8cbe", label="completed req/s")
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("throughput (req/s)")
    ax2 = ax.twinx()
    ax2.plot(offered, [s["latency"]["p99_ms"] for s in steps], marker="s", color="#e34a33", label="p99 (ms)")
    ax2.axhline(ramp["p99_target_ms"], color="#e34a33", ls=":", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylabel("p99 latency (ms, log)", color="#e34a33")
    if ramp.get("knee_rps"):
        ax.axvline(ramp["knee_rps"], color="green", lw=2, alpha=0.5, label=f"knee {ramp['knee_rps']:g} req/s")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(f"Ramp: throughput and p99 vs offered rate (p99 target {ramp['p99_target_ms']:g} ms)")
    ax.grid(alpha=0.3)
    return _save(fig, folder, "ramp")


def plot_rss(results: dict[str, Any], folder: Path) -> str | None:
    fig, (ax, ax_fd) = plt.subplots(1, 2, figsize=(12, 4))
    drawn = 0
    for name, r in results["scenarios"].items():
        samples = (r.get("resources") or {}).get("samples") or []
        if samples:
            ax.plot([s["t"] for s in samples], [s["rss_mb"] for s in samples], label=name, lw=2 if name == "soak"
                    else 1)
            ax_fd.plot([s["t"] for s in samples], [s["fds"] for s in samples], label=name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title("Server RSS over time (all server processes)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax_fd.set_title("Open file descriptors")
    ax_fd.set_xlabel("seconds")
    for a in (ax, ax_fd):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    return _save(fig, folder, "rss_over_time")


def plot_arms(results: dict[str, Any], folder: Path, scenario: str, title: str, name: str) -> str | None:
    r = results["scenarios"].get(scenario)
    if not r or not r.get("arms"):
        return None
    arms = r["arms"]
    labels = list(arms)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = ["#7bccc4", "#2b8cbe", "#e34a33", "#fdae61"]
    ax1.bar(labels, [arms[a]["throughput_rps"] for a in labels], color=colors[: len(labels)])
    ax1.set_ylabel("req/s (median of rounds)")
    ax1.set_title("Throughput")
    x = range(len(labels))
    ax2.bar([i - 0.2 for i in x], [arms[a]["p50_ms"] for a in labels], width=0.4, label="p50", color="#2b8cbe")
    ax2.bar([i + 0.2 for i in x], [arms[a]["p99_ms"] for a in labels], width=0.4, label="p99", color="#e34a33")
    ax2.set_xticks(list(x), labels)
    ax2.set_ylabel("ms (median of rounds)")
    ax2.set_title("Latency")
    ax2.legend(fontsize=8)
    ratios = textwrap.fill(", ".join(f"{k} = {v:.2f}" for k, v in (r.get("ratios") or {}).items()), 110)
    fig.suptitle(f"{title}\n{ratios}", fontsize=10)
    fig.tight_layout()
    return _save(fig, folder, name)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def _summary_rows(results: dict[str, Any]) -> str:
    rows = []
    for name, r in results["scenarios"].items():
        lat = r.get("latency") or {}
        status = r.get("status", "?")
        failed = [c for c in r.get("checks", []) if not c.get("ok")]
        note = "; ".join(f"{c['name']}: {c['detail']}" for c in failed) or r.get("error", "")
        extra = []
        if r.get("knee_rps") is not None:
            extra.append(f"knee {r['knee_rps']:g} req/s")
        for k, v in (r.get("ratios") or {}).items():
            extra.append(f"{k} {v:.2f}")
        server = r.get("server") or {}
        if "cache_hit_rate" in server:
            extra.append(f"cache hit rate {server['cache_hit_rate']:.1%}")
        if "client_repeat_ratio" in server:
            extra.append(f"repeat ratio {server['client_repeat_ratio']:.1%}")
        rows.append(
            f"<tr class='{html.escape(status)}'><td>{html.escape(name)}</td><td class='st'>{html.escape(status)}</td>"
            f"<td>{_fmt(r.get('throughput_rps', ''))}</td><td>{_fmt(lat.get('p50_ms', ''))}</td>"
            f"<td>{_fmt(lat.get('p99_ms', ''))}</td><td>{_fmt(lat.get('p99.9_ms', ''))}</td>"
            f"<td>{_fmt(lat.get('max_ms', ''))}</td><td>{html.escape(', '.join(extra))}</td>"
            f"<td>{html.escape(str(note))[:400]}</td><td>{_fmt(r.get('wall_s', ''))}</td></tr>")
    return "\n".join(rows)


def _checks(results: dict[str, Any]) -> str:
    parts = []
    for name, r in results["scenarios"].items():
        items = "".join(
            f"<li class='{'ok' if c['ok'] else 'bad'}'>{'&#10004;' if c['ok'] else '&#10008;'} "
            f"<b>{html.escape(c['name'])}</b>: {html.escape(str(c['detail']))[:600]}</li>"
            for c in r.get("checks", []))
        errors: dict[str, int] = {}
        for phase in (r.get("phases") or {}).values():
            if isinstance(phase, dict):
                for k, v in phase.get("errors", {}).items():
                    errors[k] = errors.get(k, 0) + v
        err = f"<p>errors by kind: {html.escape(json.dumps(errors))}</p>" if errors else ""
        parts.append(f"<h3>{html.escape(name)}</h3><ul>{items}</ul>{err}")
    return "\n".join(parts)


def _replicas_table(results: dict[str, Any]) -> str:
    """The ``replicas`` scenario's arms: throughput and latency, CPU per replica and of PostgreSQL, DB statements."""
    r = results["scenarios"].get("replicas")
    if not r or not r.get("arms"):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt(a['throughput_rps'])} "
        f"({_fmt(a['throughput_spread_rps'][0])}-{_fmt(a['throughput_spread_rps'][1])})</td>"
        f"<td>{_fmt(a['p50_ms'])}</td><td>{_fmt(a['p99_ms'])}</td>"
        f"<td>{html.escape(', '.join(f'{c:g}' for c in a['cpu_pct_per_replica']))}</td>"
        f"<td>{_fmt(a['db_cpu_pct'])}</td><td>{_fmt(a['loadgen_cpu_pct'])}</td>"
        f"<td>{_fmt(a['db_statements_per_op'])}</td></tr>"
        for name, a in r["arms"].items())
    cores = r.get("cores", {})
    return (f"<h2>Replicas</h2><p>Medians of {r.get('rounds')} paired rounds, {r.get('concurrency')} clients; load "
            f"generator on core(s) {cores.get('load_generator')}, servers and PostgreSQL on {cores.get('servers')}."
            "</p><table><tr><th>arm</th><th>req/s (min-max)</th><th>p50 ms</th><th>p99 ms</th>"
            "<th>CPU % per replica</th><th>PostgreSQL CPU %</th><th>load generator CPU %</th>"
            "<th>DB statements per operation</th></tr>"
            f"{rows}</table>")


def _gate(results: dict[str, Any]) -> str:
    gate = results.get("gate")
    if not gate:
        return "<p>The gate was not run (use <code>--gate</code>).</p>"
    rows = "".join(f"<tr class='{'pass' if r['ok'] else 'fail'}'><td>{html.escape(r['metric'])}</td>"
                   f"<td class='st'>{'ok' if r['ok'] else 'REGRESSION'}</td>"
                   f"<td>{html.escape(str(r['detail']))}</td></tr>"
                   for r in gate["rows"])
    return (f"<p>Gate: <b class='{'pass' if gate['passed'] else 'fail'}'>{'PASS' if gate['passed'] else 'FAIL'}</b> "
            f"against {html.escape(gate['baseline_file'])}</p><table><tr><th>ratio</th><th>verdict</th>"
            f"<th>detail</th></tr>{rows}</table>")


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
th{background:#eee}tr.pass .st,b.pass{color:#1a7f37;font-weight:bold}tr.fail .st,tr.error .st,b.fail{color:#c00;
font-weight:bold}tr.fail,tr.error{background:#fff0f0}li.ok{color:#1a7f37}li.bad{color:#c00}
.banner{padding:1em;font-size:20px;border-radius:6px}.banner.pass{background:#e6ffec}.banner.fail{background:#ffebe9}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
"""


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = out_dir / "plots"
    plots = [
        ("Latency percentiles over time", plot_timelines(results, plots_dir)),
        ("Ramp: throughput vs offered rate", plot_ramp(results, plots_dir)),
        ("Latency CDF", plot_cdf(results, plots_dir)),
        ("Server RSS and fds over time", plot_rss(results, plots_dir)),
        ("Telemetry on vs off", plot_arms(results, plots_dir, "telemetry-overhead",
                                          "Telemetry on (OTLP, sampling 1.0) vs off", "telemetry_on_off")),
        ("otel-mcp vs the raw SDK echo tool", plot_arms(results, plots_dir, "reference",
                                                        "otel-mcp vs raw SDK echo (same run)", "reference")),
        ("Replicas on PostgreSQL vs one on SQLite", plot_arms(results, plots_dir, "replicas",
                                                              "Mixed workload by replicas (same run)", "replicas")),
    ]
    statuses = [r.get("status") for r in results["scenarios"].values()]
    ok = all(s in ("pass", "skip") for s in statuses) and results.get("gate", {}).get("passed", True)
    m = results.get("machine", {})
    machine = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB, "
               f"Python {m.get('python', '?')}, load avg {m.get('load_avg', '?')}")
    body = [
        f"<h1>otel-mcp load test: profile {html.escape(results.get('profile', '?'))}</h1>",
        f"<div class='banner {'pass' if ok else 'fail'}'>{'&#10004; All fine' if ok else '&#10008; Needs attention'}: "
        f"{statuses.count('pass')} of {len(statuses)} scenarios passed"
        f"{'' if 'gate' not in results else ('; gate ' + ('passed' if results['gate']['passed'] else 'FAILED'))}"
        "</div>",
        f"<p>Machine: {html.escape(machine)}. Seed {results.get('seed')}.</p>",
        "<h2>Summary</h2><table><tr><th>scenario</th><th>status</th><th>throughput (req/s)</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>figures</th><th>failed checks</th><th>wall s</th></tr>",
        _summary_rows(results), "</table>",
        _replicas_table(results),
        "<h2>Regression gate</h2>", _gate(results),
        "<h2>Plots</h2>",
    ]
    for title, path in plots:
        if path:
            body.append(f"<h3>{html.escape(title)}</h3><a href='{path}'><img src='{path}' alt='{title}'></a>")
    body += ["<h2>Checks</h2>", _checks(results),
             "<p>Raw figures: <a href='results.json'>results.json</a>. Latency is in milliseconds; open-loop latency "
             "is measured from each request's intended send time.</p>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>otel-mcp perf report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    report = out_dir / "report.html"
    report.write_text(page)
    return report


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    source = Path(args[0]) if args else LOAD_RESULTS_DIR / "results.json"
    results = json.loads(source.read_text())
    print(write_report(results, source.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
