"""Brotli qualities vs no compression on real rule text (``python -m otel_mcp.loadtest.compression_bench [--quick]``).

Inputs come from the rule corpus (``otel_mcp/loadtest/cache_corpus.py``): a small rule (the
median corpus file, ~3 KiB), 100 KiB and 1 MiB made by concatenating distinct
corpus rules in order (never a repeated string). For each size and quality:
ratio, compress and decompress time (median of several runs), as a table.
Writes ``perf/results/compression_bench.txt`` and ``.json``. Exits 1 when the
default quality misses its budget: compression <= 2 ms per 100 KiB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import brotli

from otel_mcp.cache.disk import DEFAULT_COMPRESS_QUALITY
from otel_mcp.loadtest import RESULTS_DIR
from otel_mcp.loadtest.cache_corpus import corpus_available, load_corpus

QUALITIES = (0, 1, 2, 3, 4, 5, 6, 7, 9, 11)
BUDGET_PER_100K = 2e-3  # seconds to compress 100 KiB at the default quality


def inputs() -> dict[str, bytes]:
    bodies = [body.encode() for _, _, body in load_corpus()]
    small = sorted(bodies, key=len)[len(bodies) // 2]

    def joined(size: int) -> bytes:
        out = bytearray()
        for body in bodies:
            out += body + b"\n\n"
            if len(out) >= size:
                break
        return bytes(out[:size])

    return {"small": small, "100KiB": joined(100 * 1024), "1MiB": joined(1024 * 1024)}


def timed(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(data: bytes, quality: int | None, repeat: int) -> dict[str, float]:
    if quality is None:
        return {"ratio": 1.0, "compress_ms": 0.0, "decompress_ms": 0.0}
    packed = brotli.compress(data, mode=brotli.MODE_TEXT, quality=quality)
    return {
        "ratio": len(data) / len(packed),
        "compress_ms": timed(lambda: brotli.compress(data, mode=brotli.MODE_TEXT, quality=quality), repeat) * 1e3,
        "decompress_ms": timed(lambda: brotli.decompress(packed), repeat) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip q11 on 1 MiB (CI)")
    args = parser.parse_args(argv)
    if not corpus_available():
        print("compression_bench: skipped, the corpus ../shared/corpus is missing")
        return 0
    results: dict[str, dict[str, dict[str, float]]] = {}
    lines = ["| input | bytes | quality | ratio | compress ms | decompress ms | compress ms per 100 KiB |",
             "|---|---|---|---|---|---|---|"]
    for name, data in inputs().items():
        results[name] = {}
        for quality in (None, *QUALITIES):
            if args.quick and name == "1MiB" and quality is not None and quality >= 9:
                continue
            repeat = 3 if (args.quick or (quality or 0) >= 9 or name == "1MiB") else 11
            row = measure(data, quality, repeat)
            per_100k = row["compress_ms"] * 100 * 1024 / len(data)
            row["compress_ms_per_100k"] = per_100k
            label = "none" if quality is None else str(quality)
            results[name][label] = row
            lines.append(
                f"| {name} | {len(data)} | {label} | {row['ratio']:.2f} | {row['compress_ms']:.3f} | "
                f"{row['decompress_ms']:.3f} | {per_100k:.2f} |"
            )
    text = "\n".join(lines)
    print(text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "compression_bench.txt").write_text(text + "\n")
    (RESULTS_DIR / "compression_bench.json").write_text(json.dumps(results, indent=2))
    chosen = results["100KiB"][str(DEFAULT_COMPRESS_QUALITY)]
    ok = chosen["compress_ms"] <= BUDGET_PER_100K * 1e3
    print(f"\ndefault quality {DEFAULT_COMPRESS_QUALITY}: {chosen['ratio']:.2f}x, {chosen['compress_ms']:.2f} ms"
          f" per 100 KiB (budget {BUDGET_PER_100K * 1e3:.0f} ms): {'ok' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
