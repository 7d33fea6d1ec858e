"""Generate the tables of ``docs/telemetry.md`` from ``names`` (``python -m otel_mcp.telemetry.docs``).

The test suite compares the file with this output, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from otel_mcp.telemetry import names

BEGIN = "<!-- generated: otel_mcp.telemetry.docs (do not edit between these markers) -->"
END = "<!-- end generated -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def tables() -> str:
    lines = [BEGIN, "", "### Spans", "", "| span name | kind | attributes | emitted by | note |",
             "|---|---|---|---|---|"]
    for span in names.SPANS:
        attrs = ", ".join(f"`{a}`" for a in span.attributes)
        lines.append(f"| `{span.name}` | {span.kind} | {attrs} | {span.source} | {span.note} |")
    lines += ["", "### Metrics", "", "| metric | instrument | unit | attributes | emitted by | meaning |",
              "|---|---|---|---|---|---|"]
    for m in names.CATALOG:
        attrs = ", ".join(f"`{a}`" for a in m.attributes) or "-"
        lines.append(f"| `{m.name}` | {m.kind} | `{m.unit}` | {attrs} | {m.source} | {m.description} |")
    lines += ["", "System metrics (``opentelemetry-instrumentation-system-metrics``, semconv names and units): "
              + ", ".join(f"`{n}`" for n in names.SYSTEM_METRICS) + ".", "",
              "Bucket boundaries (seconds unless noted):", "",
              f"- semconv `mcp.server.*.duration`: `{list(names.SEMCONV_DURATION_BUCKETS)}`",
              f"- View on `mcp.server.operation.duration` (default on): `{list(names.FINE_DURATION_BUCKETS)}`",
              f"- compose steps and DB statements: `{list(names.STEP_DURATION_BUCKETS)}`",
              f"- sizes (bytes): `{list(names.SIZE_BUCKETS)}`", "", END]
    return "\n".join(lines)


def render(current: str) -> str:
    """``current`` with its generated section replaced (appended if missing)."""
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + tables() + tail
    return current.rstrip("\n") + "\n\n" + tables() + "\n"


def main() -> int:
    DOC.write_text(render(DOC.read_text() if DOC.exists() else "# Telemetry\n"))
    print(f"written {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
