"""Trace-driven cache simulator: L1 policies vs Belady's optimal (``python -m perf.cache_sim [--quick]``).

Replays each trace through every candidate policy at several cache sizes and
prints hit ratios next to Belady's MIN (offline optimal, with bypass) on the
same trace. The online policies are the classes L1 runs
(``otel_mcp.cache.policy``) plus ``theine`` (a W-TinyLFU in Rust, counted in
entries) as an outside reference. Entries have unit size, so that MIN is the
true optimum (with variable sizes the optimum is NP-hard).

Traces: Zipf 0.7 / 0.9 / 1.1; Zipf 0.9 with one-off scans mixed in; Zipf 0.9
whose ranking moves every fifth of the trace; and a recorded trace (one key per
line, ``--trace FILE``) or, without one, bursty agent sessions over the
composition requests of ``perf/cache_corpus.py``.

Writes ``perf/results/cache_sim.txt``, ``.json`` and ``.png``. Reports where the
chosen policy (``DEFAULT_L1_POLICY``) is more than 5 points under MIN on a Zipf
trace or under LRU on any trace (by more than 0.5 point of noise); with
``--strict`` that also makes the exit status 1.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from otel_mcp.cache.core import DEFAULT_L1_POLICY
from otel_mcp.cache.policy import LRUPolicy, S3FIFOPolicy, TinyLFUPolicy

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (0.005, 0.01, 0.05, 0.10, 0.20)  # cache size as a fraction of the distinct keys
MAX_GAP_TO_MIN = 0.05  # absolute hit ratio, on the Zipf traces
LRU_NOISE = 0.005


def zipf(n_keys: int, length: int, alpha: float, rng: np.random.Generator) -> list[int]:
    weights = 1.0 / np.arange(1, n_keys + 1) ** alpha
    ranks = rng.choice(n_keys, size=length, p=weights / weights.sum())
    ids = rng.permutation(n_keys)  # popularity unrelated to key order
    return [int(k) for k in ids[ranks]]


def scan_mixed(n_keys: int, length: int, rng: np.random.Generator) -> list[int]:
    """Zipf 0.9, with a scan of never-repeated keys (2% of the trace each) after every tenth."""
    base = zipf(n_keys, length, 0.9, rng)
    out: list[int] = []
    fresh = n_keys
    step, scan = length // 10, length // 50
    for i in range(0, length, step):
        out.extend(base[i : i + step])
        out.extend(range(fresh, fresh + scan))
        fresh += scan
    return out


def shifting(n_keys: int, length: int, rng: np.random.Generator) -> list[int]:
    """Zipf 0.9 whose hot set is replaced by other keys five times."""
    out: list[int] = []
    phase = length // 5
    for p in range(5):
        out.extend(k + p * (n_keys // 5) for k in zipf(n_keys, phase, 0.9, rng))
    return out


def sessions(n_keys: int, length: int, rng: np.random.Generator) -> list[int]:
    """Agents in sessions: a Zipf(1.0) pick of a request, repeated a geometric number of times."""
    picks = zipf(n_keys, length, 1.0, rng)
    out: list[int] = []
    for key in picks:
        out.extend([key] * int(rng.geometric(0.3)))
        if len(out) >= length:
            break
    return out[:length]


def belady(trace: Sequence[int], size: int) -> float:
    """Hit ratio of MIN with bypass: evict (or skip) the key used farthest in the future."""
    never = len(trace) + 1
    next_use = [never] * len(trace)
    last: dict[int, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        next_use[i] = last.get(trace[i], never)
        last[trace[i]] = i
    cached: dict[int, int] = {}  # key -> its next use
    heap: list[tuple[int, int]] = []
    hits = 0
    for i, key in enumerate(trace):
        nxt = next_use[i]
        if key in cached:
            hits += 1
        elif len(cached) >= size:
            while True:
                far, victim = heapq.heappop(heap)
                if cached.get(victim) == -far:
                    break
            if -far <= nxt:  # the newcomer is needed later than anything cached: bypass it
                heapq.heappush(heap, (far, victim))
                continue
            del cached[victim]
        cached[key] = nxt
        heapq.heappush(heap, (-nxt, key))
    return hits / len(trace)


def online(factory: Callable[[int], object], trace: Sequence[int], size: int) -> float:
    policy = factory(size)
    get, put = policy.get, policy.put  # type: ignore[attr-defined]
    hits = 0
    for k in trace:
        key = str(k)
        if get(key) is None:
            put(key, True, 1)
        else:
            hits += 1
    return hits / len(trace)


def theine_ratio(trace: Sequence[int], size: int) -> float:
    from theine import Cache

    cache: Cache[int, bool] = Cache(size)
    hits = 0
    for key in trace:
        if cache.get(key)[1]:
            hits += 1
        else:
            cache.set(key, True)
    return hits / len(trace)


POLICIES: dict[str, Callable[[Sequence[int], int], float]] = {
    "lru": lambda t, s: online(LRUPolicy, t, s),
    "s3fifo": lambda t, s: online(S3FIFOPolicy, t, s),
    "tinylfu": lambda t, s: online(lambda c: TinyLFUPolicy(c, expected_entries=c), t, s),
    "theine": theine_ratio,
    "belady": belady,
}


def traces(n_keys: int, length: int, recorded: Path | None, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    out = {
        "zipf-0.7": zipf(n_keys, length, 0.7, rng),
        "zipf-0.9": zipf(n_keys, length, 0.9, rng),
        "zipf-1.1": zipf(n_keys, length, 1.1, rng),
        "scan-mixed": scan_mixed(n_keys, length, rng),
        "shifting": shifting(n_keys, length, rng),
    }
    if recorded is not None:
        names: dict[str, int] = {}
        lines = [line.strip() for line in recorded.read_text().splitlines() if line.strip()]
        out["recorded"] = [names.setdefault(line, len(names)) for line in lines]
    else:
        out["sessions"] = sessions(n_keys // 10, length, rng)
    return out


def run(n_keys: int, length: int, recorded: Path | None, seed: int = 1) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, trace in traces(n_keys, length, recorded, seed).items():
        distinct = len(set(trace))
        results[name] = {}
        for fraction in SIZES:
            size = max(2, int(distinct * fraction))
            row = {p: fn(trace, size) for p, fn in POLICIES.items()}
            results[name][f"{fraction:.3f}"] = row
            print(f"  {name:<11} size {fraction:>6.1%} ({size:>5}): "
                  + "  ".join(f"{p} {r:.3f}" for p, r in row.items()), file=sys.stderr)
    return results


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    names = list(POLICIES)
    lines = [f"| trace | size | {' | '.join(names)} | {DEFAULT_L1_POLICY} - MIN |", "|" + "---|" * (len(names) + 3)]
    for trace, rows in results.items():
        for size, row in rows.items():
            gap = row[DEFAULT_L1_POLICY] - row["belady"]
            cells = " | ".join(f"{row[p]:.3f}" for p in names)
            lines.append(f"| {trace} | {float(size):.1%} | {cells} | {gap:+.3f} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    for ax, (trace, rows) in zip(axes.flat, results.items(), strict=False):
        xs = [float(s) * 100 for s in rows]
        for p in POLICIES:
            ax.plot(xs, [rows[s][p] for s in rows], marker="o", label=p, linestyle="--" if p == "belady" else "-")
        ax.set_title(trace)
        ax.set_xscale("log")
        ax.set_xlabel("cache size (% of distinct keys)")
        ax.set_ylabel("hit ratio")
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdict(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    problems = []
    for trace, rows in results.items():
        for size, row in rows.items():
            chosen = row[DEFAULT_L1_POLICY]
            if trace.startswith("zipf") and row["belady"] - chosen > MAX_GAP_TO_MIN:
                problems.append(f"{trace} @ {size}: {chosen:.3f} is more than 5 points under MIN {row['belady']:.3f}")
            if chosen < row["lru"] - LRU_NOISE:
                problems.append(f"{trace} @ {size}: {chosen:.3f} is under LRU {row['lru']:.3f}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter traces (CI)")
    parser.add_argument("--trace", type=Path, default=None, help="a recorded trace: one key per line")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    n_keys, length = (5_000, 40_000) if args.quick else (20_000, 200_000)
    random.seed(1)
    start = time.monotonic()
    results = run(n_keys, length, args.trace)
    text = table(results)
    problems = verdict(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache_sim.txt").write_text(text + "\n")
    (RESULTS / "cache_sim.json").write_text(json.dumps(results, indent=2))
    plot(results, RESULTS / "cache_sim.png")
    print(text)
    print(f"\n{n_keys} keys, {length} requests per trace, {time.monotonic() - start:.0f} s;"
          f" plot in {RESULTS / 'cache_sim.png'}")
    for problem in problems:
        print("TARGET MISSED:", problem)
    return 1 if problems and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
