"""``otel-mcp traces [show ID]``: Jaeger's traces in a terminal, for people on a server over SSH.

Reads Jaeger's documented API v3 (``/api/v3/traces``: OTLP JSON with hex ids), so it works
with any Jaeger v2 that holds the service's spans, ours or the docker-compose one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from otel_mcp.stack import _settings as s

SERVICE = "otel-mcp"
STATUS_ERROR = (2, "STATUS_CODE_ERROR")  # OTLP JSON writes enums as numbers or as names
_TIMEOUT = 10.0
SEARCH_DEPTH_FACTOR = 10  # recent traces read per trace listed: enough for a slow one among fast ones


class JaegerUnavailable(RuntimeError):
    """Jaeger did not answer, or answered something that is not its API."""


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    start_ns: int
    end_ns: int
    error: bool

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]

    @property
    def start_ns(self) -> int:
        return min(sp.start_ns for sp in self.spans)

    @property
    def duration_ns(self) -> int:
        return max(sp.end_ns for sp in self.spans) - self.start_ns

    @property
    def errors(self) -> int:
        return sum(sp.error for sp in self.spans)

    @property
    def root(self) -> Span:
        ids = {sp.span_id for sp in self.spans}
        roots = [sp for sp in self.spans if sp.parent_id not in ids]
        return min(roots or self.spans, key=lambda sp: sp.start_ns)


# --- reading the API --------------------------------------------------------------------------


def _get(url: str) -> dict[str, Any] | None:
    """The JSON document at ``url``; None for Jaeger's 404 "No traces found"."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise JaegerUnavailable(f"Jaeger answered HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JaegerUnavailable(f"Jaeger is not answering at {url.split('/api/', maxsplit=1)[0]} ({reason}); "
                                "start the stack with `otel-mcp stack up` or pass --jaeger-url") from None
    except ValueError:
        raise JaegerUnavailable(f"{url} did not return JSON: is that Jaeger's query port?") from None


def _value(attr: dict[str, Any]) -> str:
    value = attr.get("value", {})
    return str(next(iter(value.values()), "")) if isinstance(value, dict) else ""


def parse_traces(doc: dict[str, Any] | None) -> list[Trace]:
    """Group the spans of an API v3 answer (``result.resourceSpans``) by trace id."""
    by_trace: dict[str, list[Span]] = {}
    for rs in ((doc or {}).get("result") or {}).get("resourceSpans", []):
        attrs = {a.get("key"): _value(a) for a in (rs.get("resource") or {}).get("attributes", [])}
        service = attrs.get("service.name", "?")
        for ss in rs.get("scopeSpans", []):
            for raw in ss.get("spans", []):
                span = Span(
                    trace_id=raw["traceId"], span_id=raw["spanId"], parent_id=raw.get("parentSpanId", ""),
                    name=raw.get("name", ""), service=service,
                    start_ns=int(raw.get("startTimeUnixNano", 0)), end_ns=int(raw.get("endTimeUnixNano", 0)),
                    error=(raw.get("status") or {}).get("code") in STATUS_ERROR,
                )
                by_trace.setdefault(span.trace_id, []).append(span)
    return [Trace(tid, tuple(spans)) for tid, spans in by_trace.items()]


def recent_traces(jaeger_url: str, service: str, *, since: timedelta, limit: int) -> list[Trace]:
    """The service's traces started within ``since``, slowest first (at most ``limit``).

    Jaeger returns the most recent traces up to the search depth, so ask for more than are
    shown: the slowest of the last ``SEARCH_DEPTH_FACTOR * limit`` traces are listed.
    """
    now = datetime.now(UTC)
    query = urllib.parse.urlencode({
        "query.service_name": service,
        "query.start_time_min": (now - since).isoformat(),
        "query.start_time_max": (now + timedelta(minutes=1)).isoformat(),
        "query.num_traces": str(limit * SEARCH_DEPTH_FACTOR),
    })
    traces = parse_traces(_get(f"{jaeger_url}/api/v3/traces?{query}"))
    return sorted(traces, key=lambda t: t.duration_ns, reverse=True)[:limit]


def get_trace(jaeger_url: str, trace_id: str) -> Trace | None:
    found = parse_traces(_get(f"{jaeger_url}/api/v3/traces/{urllib.parse.quote(trace_id)}"))
    return found[0] if found else None


# --- rendering --------------------------------------------------------------------------------


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms" if ns < 10_000_000_000 else f"{ns / 1e9:.1f} s"


def render_list(traces: Iterable[Trace]) -> str:
    rows = [f"{'TRACE ID':<32}  {'START (UTC)':<12}  {'DURATION':>10}  {'SPANS':>5}  {'ERRORS':>6}  ROOT SPAN"]
    for t in traces:
        started = datetime.fromtimestamp(t.start_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:12]
        root = t.root
        rows.append(f"{t.trace_id:<32}  {started:<12}  {_ms(t.duration_ns):>10}  {len(t.spans):>5}  "
                    f"{t.errors:>6}  {root.service}: {root.name}")
    return "\n".join(rows)


def _walk(trace: Trace) -> Iterator[tuple[int, Span]]:
    """Depth-first by parentage, siblings by start time; spans whose parent is missing are roots."""
    ids = {sp.span_id for sp in trace.spans}
    children: dict[str, list[Span]] = {}
    for sp in trace.spans:
        children.setdefault(sp.parent_id if sp.parent_id in ids else "", []).append(sp)
    stack = [(0, sp) for sp in sorted(children.get("", []), key=lambda x: x.start_ns, reverse=True)]
    while stack:
        depth, span = stack.pop()
        yield depth, span
        kids = sorted(children.get(span.span_id, []), key=lambda x: x.start_ns, reverse=True)
        stack += [(depth + 1, kid) for kid in kids]


def render_waterfall(trace: Trace, width: int = 100) -> str:
    """One line per span: indented name, a bar placed and scaled on the trace's time axis,
    the duration, and ``ERROR`` on failed spans."""
    t0, total = trace.start_ns, max(trace.duration_ns, 1)
    name_w = max(24, min(56, width // 2))
    bar_w = max(10, width - name_w - 22)
    root = trace.root
    lines = [f"trace {trace.trace_id}: {root.service}: {root.name}, {_ms(trace.duration_ns)}, "
             f"{len(trace.spans)} spans, {trace.errors} error(s)",
             f"{'':<{name_w}} |{'0':<{bar_w // 2}}{_ms(trace.duration_ns):>{bar_w - bar_w // 2}}|"]
    for depth, span in _walk(trace):
        label = "  " * depth + span.name + ("" if span.service == root.service else f" [{span.service}]")
        if len(label) > name_w:
            label = label[: name_w - 1] + "~"
        start = int((span.start_ns - t0) / total * bar_w)
        length = max(1, round(span.duration_ns / total * bar_w))
        start = min(start, bar_w - length)
        bar = " " * start + "#" * length + " " * (bar_w - start - length)
        mark = "  ERROR" if span.error else ""
        lines.append(f"{label:<{name_w}} |{bar}| {_ms(span.duration_ns):>10}{mark}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------


def register_cli(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given before or after `show`, the one given wins (a subparser default would overwrite it).
    common.add_argument("--jaeger-url", default=argparse.SUPPRESS,
                        help=f"Jaeger's query endpoint (default {s.jaeger_query_url()})")
    traces = sub.add_parser("traces", parents=[common],
                            help="recent traces from Jaeger, slowest first; `traces show ID`: one waterfall")
    traces.add_argument("--service", default=SERVICE, help=f"service name (default {SERVICE})")
    traces.add_argument("--since", type=float, default=60.0, metavar="MINUTES",
                        help="look back this many minutes (default 60)")
    traces.add_argument("--limit", type=int, default=20,
                        help=f"traces listed: the slowest of the last {SEARCH_DEPTH_FACTOR}x as many (default 20)")
    traces.set_defaults(func=cmd_list)
    commands = traces.add_subparsers(dest="traces_command", metavar="{show}")
    show = commands.add_parser("show", parents=[common], help="one trace as a waterfall")
    show.add_argument("trace_id", help="the trace id (32 hex digits)")
    show.add_argument("--width", type=int, default=None, help="columns (default: the terminal's)")
    show.set_defaults(func=cmd_show)


def _jaeger_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "jaeger_url", None) or s.jaeger_query_url()).rstrip("/")


def cmd_list(args: argparse.Namespace) -> int:
    try:
        traces = recent_traces(_jaeger_url(args), args.service, since=timedelta(minutes=args.since),
                               limit=args.limit)
    except JaegerUnavailable as exc:
        print(f"otel-mcp traces: {exc}", file=sys.stderr)
        return 1
    if not traces:
        print(f"no traces of {args.service} in the last {args.since:g} minutes")
        return 0
    print(render_list(traces))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        trace = get_trace(_jaeger_url(args), args.trace_id)
    except JaegerUnavailable as exc:
        print(f"otel-mcp traces show: {exc}", file=sys.stderr)
        return 1
    if trace is None:
        print(f"otel-mcp traces show: no trace {args.trace_id} in Jaeger", file=sys.stderr)
        return 1
    print(render_waterfall(trace, args.width or shutil.get_terminal_size((120, 40)).columns))
    return 0
