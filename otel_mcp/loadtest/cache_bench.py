"""Cache speed and storage, as ratios measured in one run (``python -m otel_mcp.loadtest.cache_bench [--quick]``).

- L1 hit vs cold compose, on 1,000 corpus rules with ~50 selected (target >= 20x);
- L2 hit (L1 emptied before each lookup) vs cold compose (target >= 5x);
- stored bytes of compositions of the real corpus: raw JSON vs brotli per entry
  vs the L2 layout (content-addressed bodies + skeletons) (target >= 8x).

"Cold" is ``ComposeService.compose`` on a miss with the rule set already in
memory (the steady state of a server), so the ratios are what a hit saves.
Exits 1 when a target is missed. Writes ``perf/results/cache_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from otel_mcp.cache.core import TieredCache, encode_composition
from otel_mcp.cache.disk import DEFAULT_COMPRESS_QUALITY, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_MIN_SAVING, decode, encode
from otel_mcp.compose.engine import ComposeRequest, Composition
from otel_mcp.compose.service import ComposeService
from otel_mcp.loadtest import RESULTS_DIR
from otel_mcp.loadtest.cache_corpus import corpus_available, request_files, rule_specs
from otel_mcp.store.sqlite import RuleStore

TARGET_L1 = 20.0  # x faster than cold
TARGET_L2 = 5.0
TARGET_STORED = 8.0  # x fewer stored bytes than raw


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _store(directory: Path, rules: int) -> RuleStore:
    store = RuleStore(directory / "rules.db")
    for spec in rule_specs(rules):
        store.create(spec)
    return store


def measure_speed(directory: Path, rules: int, requests: int, repeat: int) -> dict[str, float]:
    store = _store(directory, rules)
    cold_service = ComposeService(store)
    cache = TieredCache(directory / "cache")
    service = ComposeService(store, cache)
    reqs = [ComposeRequest.from_args(context_files=request_files(r)) for r in range(requests)]
    selected = statistics.mean(len(cold_service.compose(r).included) for r in reqs)
    cold = statistics.median(_median_time(partial(cold_service.compose, r), repeat) for r in reqs)
    for r in reqs:
        service.compose(r)  # fills both tiers
    l1 = statistics.median(_median_time(partial(service.compose, r), repeat) for r in reqs)

    def l2_lookup(r: ComposeRequest, bodies: bool) -> Composition:
        cache.clear_l1(bodies=bodies)
        return service.compose(r)

    l2 = statistics.median(_median_time(partial(l2_lookup, r, False), repeat) for r in reqs)
    l2_cold = statistics.median(_median_time(partial(l2_lookup, r, True), repeat) for r in reqs)
    # Reference: the L2 read of a per-entry layout (one brotli blob of the whole composition).
    blobs = [
        encode(json.dumps(cold_service.compose(r).to_dict()).encode(), DEFAULT_COMPRESS_THRESHOLD,
               DEFAULT_COMPRESS_QUALITY, DEFAULT_MIN_SAVING)
        for r in reqs
    ]
    def per_entry_read(blob: bytes) -> Composition:
        return Composition.from_dict(json.loads(decode(blob)))

    per_entry = statistics.median(_median_time(partial(per_entry_read, b), repeat) for b in blobs)
    assert cache.stats().errors == 0
    cache.close()
    store.close()
    return {
        "rules": rules,
        "selected_mean": selected,
        "cold_ms": cold * 1e3,
        "l1_hit_ms": l1 * 1e3,
        "l2_hit_ms": l2 * 1e3,
        "l2_cold_hit_ms": l2_cold * 1e3,
        "l1_speedup": cold / l1,
        "l2_speedup": cold / l2,
        "l2_cold_speedup": cold / l2_cold,
        "per_entry_decode_ms": per_entry * 1e3,
    }


def measure_storage(directory: Path, rules: int, compositions: int) -> dict[str, float]:
    """Bytes as stored by L2's value encoding (flag byte + brotli), before SQLite page overhead."""
    store = _store(directory, rules)
    service = ComposeService(store)
    raw = per_entry = layout = 0
    bodies: set[str] = set()
    for rank in range(compositions):
        composition = service.compose(ComposeRequest.from_args(context_files=request_files(rank)))
        data = json.dumps(composition.to_dict(), separators=(",", ":")).encode()
        raw += len(data)
        per_entry += len(encode(data, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_COMPRESS_QUALITY, DEFAULT_MIN_SAVING))
        encoded = encode_composition(composition)
        layout += len(encode(encoded.skeleton, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_COMPRESS_QUALITY,
                             DEFAULT_MIN_SAVING))
        for digest, body in encoded.bodies.items():
            if digest not in bodies:
                bodies.add(digest)
                layout += len(encode(body, DEFAULT_COMPRESS_THRESHOLD, DEFAULT_COMPRESS_QUALITY, DEFAULT_MIN_SAVING))
    store.close()
    return {
        "rules": rules,
        "compositions": compositions,
        "raw_bytes": raw,
        "per_entry_brotli_bytes": per_entry,
        "content_addressed_bytes": layout,
        "per_entry_ratio": raw / per_entry,
        "content_addressed_ratio": raw / layout,
        "unique_bodies": len(bodies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats (CI)")
    args = parser.parse_args(argv)
    if not corpus_available():
        print("cache_bench: skipped, the corpus ../shared/corpus is missing")
        return 0
    requests, repeat, compositions = (10, 5, 100) if args.quick else (40, 15, 300)
    with tempfile.TemporaryDirectory() as tmp:
        speed = measure_speed(Path(tmp) / "speed", 1000, requests, repeat)
        storage_real = measure_storage(Path(tmp) / "real", 257, compositions)
        storage_1000 = measure_storage(Path(tmp) / "k", 1000, compositions)
    print(f"{'measure':<44}{'value':>12}{'target':>10}")
    print(f"{'cold compose (ms), 1000 rules':<44}{speed['cold_ms']:>12.3f}")
    print(f"{'  rules selected (mean)':<44}{speed['selected_mean']:>12.1f}")
    print(f"{'L1 hit (ms)':<44}{speed['l1_hit_ms']:>12.4f}")
    print(f"{'L2 hit, bodies in memory (ms)':<44}{speed['l2_hit_ms']:>12.4f}")
    print(f"{'L2 hit, new process (ms)':<44}{speed['l2_cold_hit_ms']:>12.4f}")
    print(f"{'  ref: decode a per-entry brotli blob (ms)':<44}{speed['per_entry_decode_ms']:>12.4f}")
    print(f"{'L1 speedup (x)':<44}{speed['l1_speedup']:>12.1f}{TARGET_L1:>10.0f}")
    print(f"{'L2 speedup, bodies in memory (x)':<44}{speed['l2_speedup']:>12.1f}{TARGET_L2:>10.0f}")
    print(f"{'L2 speedup, new process (x)':<44}{speed['l2_cold_speedup']:>12.1f}")
    for name, s in (("257 corpus rules", storage_real), ("1000 rules", storage_1000)):
        print(f"{'stored, ' + name + f', {compositions} comps':<44}")
        print(f"{'  raw (KiB)':<44}{s['raw_bytes'] / 1024:>12.0f}")
        print(f"{'  brotli per entry (x)':<44}{s['per_entry_ratio']:>12.2f}")
        print(f"{'  content-addressed + brotli (x)':<44}{s['content_addressed_ratio']:>12.2f}{TARGET_STORED:>10.0f}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {"speed": speed, "storage_corpus": storage_real, "storage_1000": storage_1000}
    (RESULTS_DIR / "cache_bench.json").write_text(json.dumps(out, indent=2))
    ok = (
        speed["l1_speedup"] >= TARGET_L1
        and speed["l2_speedup"] >= TARGET_L2
        and storage_real["content_addressed_ratio"] >= TARGET_STORED
    )
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
