"""Worst-case glob matching and import expansion (``python -m otel_mcp.loadtest.glob_bench [--quick]``).

Glob matching (``otel_mcp.compose.globs``, RE2): the time of a first match on a freshly compiled
pattern (its automaton built from nothing, the worst case) against

- path length: ``*a*a*a*a*a*a*b`` (issue 17: 10.4 s on 80 characters with the old backtracking engine)
  on ``a`` * n, n = 1 Ki .. 1 Mi; and seven ``**/`` segments then ``x`` on 256 .. 64 Ki segments
  (far beyond what a request may carry, so that the linear term shows above the call's constant cost);
- pattern length: ``*a`` repeated k times then ``*b`` (k = 2 .. 63 wildcards, the default limit
  being 64) on 512 ``a``; and k ``**/`` segments (k = 2 .. 31) on a 512-segment path.

Each family is measured in paired, interleaved rounds (every size once per round, in a shuffled
order), reporting the median and quartiles per size and the slope of log(time) against log(size)
by least squares: linear is slope 1, quadratic 2. Exits 1 when a slope exceeds 1.2.

Import expansion: the composition time of a diamond DAG (6 layers of w rules, each importing the
whole next layer, layer 0 ``always``: 5 import steps, the default ``max_import_depth``) for several
w; the memo makes it linear in the imports (5 * w^2 edges), which the slope against edges shows.

Writes ``perf/results/glob_bench.txt`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from otel_mcp.compose import ComposeOptions, ComposeRequest, compose
from otel_mcp.compose import globs as globs_module
from otel_mcp.compose.globs import GlobLimits, matches_any
from otel_mcp.loadtest import RESULTS_DIR
from otel_mcp.store.model import Activation, Rule

MAX_SLOPE = 1.2
LIMITS = GlobLimits(max_chars=8192, max_wildcards=1024, max_segments=1024)  # room for the largest sizes


def cold_match(pattern: str, path: str) -> Callable[[], float]:
    """A measurement: compile ``pattern`` afresh (not timed), then time its first match on ``path``."""

    def run() -> float:
        globs_module._compile.cache_clear()
        globs_module._programs.cache_clear()
        globs_module.check_pattern(pattern, LIMITS)
        started = time.perf_counter()
        matches_any(path, [pattern], LIMITS)
        return time.perf_counter() - started

    return run


FAMILIES: dict[str, tuple[str, Callable[[int], Callable[[], float]], tuple[int, ...]]] = {
    "path length, *a*a*a*a*a*a*b": (
        "characters", lambda n: cold_match("*a" * 6 + "*b", "a" * n), tuple(4**i for i in range(5, 11))),
    "path length, seven **/ then x": (
        "segments", lambda n: cold_match("**/" * 7 + "x", "/".join(["d"] * n) + "/y"),
        tuple(4**i for i in range(4, 9))),
    "pattern length, (*a)^k *b on 512 a": (
        "wildcards", lambda k: cold_match("*a" * k + "*b", "a" * 512), (2, 4, 8, 16, 32, 63)),
    "pattern length, (**/)^k x on 512 segments": (
        "segments", lambda k: cold_match("**/" * k + "x", "/".join(["d"] * 512) + "/y"), (2, 4, 8, 16, 31)),
}


def diamond(width: int, layers: int = 6) -> list[Rule]:
    return [
        Rule(id=f"l{layer}-{i}", body=f"Rule {layer}.{i}.",
             activation=Activation.ALWAYS if layer == 0 else Activation.MANUAL,
             imports=tuple(f"l{layer + 1}-{j}" for j in range(width)) if layer + 1 < layers else ())
        for layer in range(layers) for i in range(width)
    ]


def diamond_compose(width: int) -> Callable[[], float]:
    rules = {r.id: r for r in diamond(width)}

    def run() -> float:
        started = time.perf_counter()
        composition = compose(rules, ComposeRequest.from_args(), ComposeOptions())
        elapsed = time.perf_counter() - started
        assert len(composition.included) == len(rules) and not composition.problems
        return elapsed

    return run


def interleaved(sizes: tuple[int, ...], make: Callable[[int], Callable[[], float]], rounds: int,
                rng: random.Random) -> dict[int, list[float]]:
    runs = {size: make(size) for size in sizes}
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        order = list(sizes)
        rng.shuffle(order)
        for size in order:
            samples[size].append(runs[size]())
    return samples


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def summarise(unit: str, samples: dict[int, list[float]], x_of: Callable[[int], float] = float) -> dict[str, Any]:
    rows = []
    for size, values in samples.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        rows.append({"size": size, unit: size, "median_us": median * 1e6, "q1_us": q1 * 1e6, "q3_us": q3 * 1e6})
    medians = [statistics.median(v) for v in samples.values()]
    return {"unit": unit, "rows": rows, "slope": slope([x_of(s) for s in samples], medians)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (10 instead of 30)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else 30
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"rounds": rounds, "max_slope": MAX_SLOPE, "globs": {}, "diamond": {}}
    for name, (unit, make, sizes) in FAMILIES.items():
        report["globs"][name] = summarise(unit, interleaved(sizes, make, rounds, rng))
    widths = (4, 8, 12, 16, 24) if args.quick else (4, 8, 12, 16, 24, 32)
    diamond_samples = interleaved(widths, diamond_compose, max(rounds // 3, 10), rng)
    report["diamond"] = summarise("width", diamond_samples, x_of=lambda w: 5.0 * w * w)
    report["diamond"]["slope_against"] = "imports (5 * width^2)"

    lines = [f"glob matching, worst case (cold automaton), {rounds} interleaved rounds: median [q1, q3]"]
    for name, result in report["globs"].items():
        lines.append(f"\n{name}: log-log slope {result['slope']:.2f}")
        lines += [f"  {row['size']:>6} {result['unit']:<10} {row['median_us']:>9.1f} us "
                  f"[{row['q1_us']:.1f}, {row['q3_us']:.1f}]" for row in result["rows"]]
    diamond_result = report["diamond"]
    lines.append(f"\ndiamond DAG compose (6 layers of w rules): log-log slope against imports "
                 f"{diamond_result['slope']:.2f}")
    lines += [f"  w={row['size']:>3} ({6 * row['size']:>3} rules, {5 * row['size'] ** 2:>5} imports) "
              f"{row['median_us'] / 1e3:>8.2f} ms [{row['q1_us'] / 1e3:.2f}, {row['q3_us'] / 1e3:.2f}]"
              for row in diamond_result["rows"]]
    text = "\n".join(lines)
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "glob_bench.txt").write_text(text + "\n")
    (RESULTS_DIR / "glob_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    slopes = [r["slope"] for r in report["globs"].values()] + [diamond_result["slope"]]
    if max(slopes) > MAX_SLOPE:
        print(f"FAIL: a slope is above {MAX_SLOPE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
