"""HDR latency histograms: one for the whole run plus one per time window.

Values are recorded in microseconds (1 us .. 1 h, 3 significant digits), so a
percentile read back is within 0.1% of the true value. ``LatencyRecorder`` keeps
a total histogram and a histogram per ``window_s`` seconds of the run, which the
report plots as latency percentiles over time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIG_FIGS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
CDF_POINTS = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)


def summarize(hist: HdrHistogram) -> dict[str, float]:
    """count, mean and p50/p90/p99/p99.9/max in milliseconds."""
    count = hist.get_total_count()
    if count == 0:
        return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p99.9_ms": 0.0,
                "max_ms": 0.0}
    out: dict[str, float] = {"count": count, "mean_ms": round(hist.get_mean_value() / 1000.0, 3)}
    for p in PERCENTILES:
        key = f"p{p:g}_ms"
        out[key] = round(hist.get_value_at_percentile(p) / 1000.0, 3)
    out["max_ms"] = round(hist.get_max_value() / 1000.0, 3)
    return out


def cdf(hist: HdrHistogram) -> list[tuple[float, float]]:
    """(percentile, latency ms) points for the CDF plot."""
    if hist.get_total_count() == 0:
        return []
    points = []
    for p in CDF_POINTS:
        value = hist.get_max_value() if p == 100 else hist.get_value_at_percentile(p)
        points.append((float(p), round(value / 1000.0, 3)))
    return points


@dataclass
class LatencyRecorder:
    """Latencies of one run: a total histogram and one per time window, plus error counts by kind."""

    window_s: float = 1.0
    total: HdrHistogram = field(default_factory=new_histogram)
    windows: dict[int, HdrHistogram] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    ok: int = 0

    def record(self, at_s: float, latency_s: float) -> None:
        """Record a successful request that was due at ``at_s`` (run-relative) and took ``latency_s``."""
        value = max(LOWEST_US, min(HIGHEST_US, int(latency_s * 1_000_000)))
        self.total.record_value(value)
        index = int(at_s // self.window_s) if at_s > 0 else 0
        window = self.windows.get(index)
        if window is None:
            window = self.windows[index] = new_histogram()
        window.record_value(value)
        self.ok += 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: LatencyRecorder) -> None:
        self.total.add(other.total)
        for index, hist in other.windows.items():
            mine = self.windows.get(index)
            if mine is None:
                mine = self.windows[index] = new_histogram()
            mine.add(hist)
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        self.ok += other.ok

    def timeline(self) -> list[dict[str, Any]]:
        """Per window: start second, requests completed per second and the latency summary."""
        rows = []
        for index in sorted(self.windows):
            hist = self.windows[index]
            row: dict[str, Any] = {"t": round(index * self.window_s, 3),
                                   "rps": round(hist.get_total_count() / self.window_s, 2)}
            row.update(summarize(hist))
            rows.append(row)
        return rows
