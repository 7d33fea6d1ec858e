"""What a person sees: ``otel-mcp demo``'s links opened in a real browser, and the terminal views.

One ``otel-mcp demo`` process runs against the session's stack (it finds the stack running and
leaves it running) and keeps its light workload going while the tests look: every URL it
prints is fetched, and the Jaeger UI (trace waterfall, search, Monitor tab) and Prometheus's
UI (graph, alerts) are rendered by Debian's headless chromium. Each page is saved as a PNG
(``browser.screenshot_dir()``); ``make screenshots`` writes them into docs/images.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml
from browser import chromium, poll, save_screenshot, wait_until
from mcp import Client
from selenium import webdriver
from selenium.webdriver.common.by import By
from stack_helpers import REPO, get_json, wait_for

from otel_mcp.stack import StackStatus
from otel_mcp.stack.traces import Trace, get_trace

pytestmark = [pytest.mark.stack, pytest.mark.timeout(1200)]

SERVICE = "otel-mcp"
DEMO_START_TIMEOUT = 240.0  # seconds from spawn to printed links (workload included) on a busy machine
PAGE_TIMEOUT = 60.0  # seconds for a page to render its data
SCRAPE_INTERVAL = 5.0  # prometheus/prometheus.yml's scrape_interval
# The Monitor tab plots rates one point per minute (its step): a point needs two scrapes of a
# growing spanmetrics counter (flushed every 2 s in the test overlay), a line two such minutes.
MONITOR_SCRAPES = 30  # 150 s, from the demo's start: the first minute boundary after two scrapes, and the next
STEPS = [f"otel_mcp.compose.{step}" for step in ("select", "expand_imports", "resolve", "order", "budget", "render")]
ALERT_NAMES = sorted(
    rule["alert"]
    for path in (REPO / "prometheus" / "rules").glob("*.yaml")
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"] if "alert" in rule
)


@dataclass(frozen=True)
class Demo:
    links: dict[str, str]  # label -> URL, as printed
    trace_id: str
    output: list[str]


def _read_links(proc: subprocess.Popen[str], lines: list[str]) -> threading.Event:
    """Collect the demo's stdout in a thread; the event is set at its "==> serving" line."""
    serving = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("==> serving"):
                serving.set()
        serving.set()  # it exited: the waiter sees it

    threading.Thread(target=pump, daemon=True).start()
    return serving


@pytest.fixture(scope="module")
def demo(stack: StackStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    work: Path = tmp_path_factory.mktemp("demo")
    with socket.socket() as sock:  # a free loopback port for the demo's server
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {**os.environ, "OTEL_MCP_STATE_DIR": str(stack.state_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_mcp.cli", "demo", "--port", str(port), "--db", str(work / "rules.db"),
         "--cache-dir", str(work / "cache"), "--duration", "1200"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    try:
        if not _read_links(proc, lines).wait(DEMO_START_TIMEOUT) or proc.poll() is not None:
            pytest.fail("otel-mcp demo did not reach '==> serving':\n" + "\n".join(lines))
        links = dict(m.groups() for m in (re.match(r"^  (\S.*?)\s{2,}(https?://\S+)$", ln) for ln in lines) if m)
        trace_id = links["Jaeger trace"].rsplit("/", 1)[1]
        yield Demo(links, trace_id, lines)
    finally:
        proc.send_signal(signal.SIGINT)  # the demo's Ctrl-C path: it stops what it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _fetch(url: str) -> tuple[int, str]:
    """Status and body; urllib raises on anything but 2xx/3xx (followed), so a body means 200."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status), resp.read().decode("utf-8", "replace")


def _page_holds(url: str, content: str) -> bool:
    status, body = _fetch(url)
    return status == 200 and content in body


def _text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


# --- the printed links ----------------------------------------------------------------------------


def test_every_link_the_demo_prints_opens_its_page(stack: StackStatus, demo: Demo) -> None:
    jaeger_ui, prometheus_ui = "<title>Jaeger UI</title>", "<title>Prometheus Time Series Collection"
    expected = {  # what each page's HTML holds; the Jaeger UI routes all serve the built UI's index.html
        "Jaeger trace": jaeger_ui, "Jaeger search": jaeger_ui, "Jaeger monitor": jaeger_ui,
        "Prometheus graph": prometheus_ui, "Prometheus alerts": ALERT_NAMES[0],
        "Prometheus targets": "otel-collector-exporter",  # once the scrape pools have synced
    }
    assert set(expected) | {"MCP endpoint"} == set(demo.links), demo.output
    for label, content in expected.items():
        url = demo.links[label]
        wait_for(functools.partial(_page_holds, url, content), PAGE_TIMEOUT,
                 f"{label}: {url} answering 200 with {content!r}")
    assert "placeholder" not in _fetch(demo.links["Jaeger trace"])[1].lower()

    async def list_tools() -> int:  # the MCP endpoint is for clients: a real one uses it
        async with Client(demo.links["MCP endpoint"]) as client:
            return len((await client.list_tools()).tools)

    assert anyio.run(list_tools) > 0


# --- Jaeger UI ----------------------------------------------------------------------------------


def _span_names(driver: webdriver.Chrome) -> set[str]:
    """Every span name of the trace page; its list is virtualised, so scroll through it."""
    names: set[str] = set()
    height = int(driver.execute_script("return document.body.scrollHeight"))
    for y in range(0, height + 900, 600):
        driver.execute_script(f"window.scrollTo(0, {y})")
        names |= {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".span-name .endpoint-name")}
        height = int(driver.execute_script("return document.body.scrollHeight"))
    driver.execute_script("window.scrollTo(0, 0)")
    return names


def _complete_trace(stack: StackStatus, demo: Demo) -> Trace:
    """The demo's trace once Jaeger holds all of it (spans arrive in batches: the same count twice, 2 s apart)."""
    counts: list[int] = []

    def settled() -> Trace | None:
        trace = get_trace(stack.urls["jaeger_ui"], demo.trace_id)
        counts.append(len(trace.spans) if trace else 0)
        return trace if trace and len(counts) > 1 and counts[-1] == counts[-2] else None

    found: Trace = wait_for(settled, PAGE_TIMEOUT, f"trace {demo.trace_id} complete in Jaeger", interval=2.0)
    return found


def test_trace_page_shows_the_composition_waterfall(stack: StackStatus, demo: Demo,
                                                      browser: webdriver.Chrome) -> None:
    want = {"tools/call compose_rules", "otel_mcp.compose", *STEPS, "INSERT"}  # INSERT: the SQL of create_rule
    assert want <= {s.name for s in _complete_trace(stack, demo).spans}  # in Jaeger; now the page must show it
    browser.get(demo.links["Jaeger trace"])
    wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".span-name"), PAGE_TIMEOUT,
               "the trace's span rows", "jaeger-trace")
    save_screenshot(browser, "jaeger-trace")
    names = wait_until(browser, lambda: (n := _span_names(browser)) >= want and n, PAGE_TIMEOUT,
                       f"span rows {sorted(want)}", "jaeger-trace")
    assert "demo workload" in names


def test_search_page_lists_otel_mcp_traces(demo: Demo, browser: webdriver.Chrome) -> None:
    browser.get(demo.links["Jaeger search"])
    results = wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".ResultItem"), PAGE_TIMEOUT,
                         "search results", "jaeger-search")
    save_screenshot(browser, "jaeger-search")
    assert any(SERVICE in r.text for r in results)
    assert demo.trace_id[:7] in _text(browser)  # the demo's trace is among them (the UI shows short ids)


def test_monitor_tab_shows_otel_mcp_latency_errors_and_requests(demo: Demo, browser: webdriver.Chrome) -> None:
    seen: dict[str, object] = {}

    def charts_with_data() -> bool:
        graphs = browser.find_elements(By.CSS_SELECTOR, ".graph-container")
        # a series drawn as a line over at least two points, not the "No Data" placeholder
        plotted = "path.recharts-area-area"
        charts = {g.find_element(By.CSS_SELECTOR, ".graph-header").text: len(g.find_elements(By.CSS_SELECTOR, plotted))
                  for g in graphs}
        operations = [r.text.split("\n")[0] for r in browser.find_elements(By.CSS_SELECTOR, ".ant-table-row")]
        seen.update(charts=charts, operations=operations)
        return len(charts) == 3 and all(charts.values()) and "tools/call compose_rules" in operations

    def opened() -> bool:
        browser.get(demo.links["Jaeger monitor"])  # reload: the page fetches its metrics once
        return bool(poll(charts_with_data, 10.0))

    wait_until(browser, opened, MONITOR_SCRAPES * SCRAPE_INTERVAL, "the Monitor tab's charts and operations",
               "jaeger-monitor", seen)
    assert f"Operations metrics under {SERVICE}" in _text(browser)
    save_screenshot(browser, "jaeger-monitor")


# --- Prometheus UI --------------------------------------------------------------------------------


def test_prometheus_graph_page_renders_the_demo_query(demo: Demo, browser: webdriver.Chrome) -> None:
    browser.get(demo.links["Prometheus graph"])
    wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#graph_0 svg path, .graph svg path, canvas"),
               PAGE_TIMEOUT, "the graph of the demo query", "prometheus-graph")
    save_screenshot(browser, "prometheus-graph")
    assert "mcp_server_operation_duration_seconds_count" in str(browser.page_source)


def test_prometheus_alerts_page_lists_our_alert_rules(demo: Demo, browser: webdriver.Chrome) -> None:
    browser.get(demo.links["Prometheus alerts"])
    wait_until(browser, lambda: all(name in _text(browser) for name in ALERT_NAMES), PAGE_TIMEOUT,
               f"alert rules {ALERT_NAMES}", "prometheus-alerts")
    save_screenshot(browser, "prometheus-alerts")


# --- the terminal views ---------------------------------------------------------------------------


def _otel_mcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_mcp.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _trace_rows(stdout: str) -> dict[str, list[str]]:
    """``otel-mcp traces`` rows by trace id: id, start, duration, unit, spans, errors, root..."""
    return {line.split()[0]: line.split() for line in stdout.splitlines()[1:]}


def _ms(row: list[str]) -> float:
    return float(row[2]) * (1000 if row[3] == "s" else 1)


def test_traces_lists_recent_traces_slowest_first(stack: StackStatus, demo: Demo) -> None:
    jaeger = stack.urls["jaeger_ui"]
    _complete_trace(stack, demo)
    spans = len(get_json(f"{jaeger}/api/traces/{demo.trace_id}")["data"][0]["spans"])  # the other API's count
    run = _otel_mcp("traces", "--jaeger-url", jaeger, "--limit", "200")
    assert run.returncode == 0, run.stderr
    rows = _trace_rows(run.stdout)
    assert demo.trace_id in rows, run.stdout
    assert int(rows[demo.trace_id][4]) == spans
    durations_ms = [_ms(r) for r in rows.values()]
    assert len(durations_ms) > 1 and durations_ms == sorted(durations_ms, reverse=True)
    # The demo's session is slower than the background calls made after it: a short list still shows it or a
    # slower trace (Jaeger returns the most recent traces; more are read than listed), not only the last calls.
    top = _otel_mcp("traces", "--jaeger-url", jaeger, "--limit", "3")
    assert top.returncode == 0, top.stderr
    assert max(_ms(r) for r in _trace_rows(top.stdout).values()) >= _ms(rows[demo.trace_id]), top.stdout


def test_traces_marks_the_failed_calls(stack: StackStatus, demo: Demo) -> None:
    # the demo's background workload fails one call in BACKGROUND_ERROR_EVERY (a missing rule)
    jaeger = stack.urls["jaeger_ui"]

    def failed_trace() -> str | None:
        rows = _trace_rows(_otel_mcp("traces", "--jaeger-url", jaeger, "--limit", "200").stdout)
        return next((tid for tid, r in rows.items() if int(r[5]) > 0), None)

    trace_id = wait_for(failed_trace, 90, "a trace with an error in `otel-mcp traces`", interval=5.0)
    run = _otel_mcp("traces", "show", trace_id, "--jaeger-url", jaeger)
    assert run.returncode == 0 and "ERROR" in run.stdout, run.stdout + run.stderr


def test_traces_show_draws_the_waterfall(stack: StackStatus, demo: Demo) -> None:
    run = _otel_mcp("traces", "show", demo.trace_id, "--jaeger-url", stack.urls["jaeger_ui"], "--width", "140")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"trace {demo.trace_id}: otel-mcp-demo-client: demo workload")

    def indent(name: str) -> int:
        line = next(ln for ln in lines[2:] if ln.split("|")[0].strip().startswith(name))
        return len(line) - len(line.lstrip())

    assert indent("demo workload") == 0
    assert indent("tools/call compose_rules") < indent("otel_mcp.compose") < indent("otel_mcp.compose.select")
