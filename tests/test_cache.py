"""The composition cache: tiers, byte bounds, compression, content addressing, failures, warming."""

from __future__ import annotations

import argparse
import errno
import io
import json
import random
import shutil
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from unittest import mock

import diskcache
import pytest

from otel_mcp.cache import (
    BrotliDisk,
    CorruptValue,
    LRUPolicy,
    Popularity,
    S3FIFOPolicy,
    TieredCache,
    TinyLFUPolicy,
    decode_composition,
    encode_composition,
    request_from_key,
    start_warming,
    warm,
)
from otel_mcp.cache import cli as cache_cli
from otel_mcp.cache.core import POPULARITY_FILE
from otel_mcp.cache.disk import FLAG_BROTLI, FLAG_RAW, decode, encode
from otel_mcp.cache.policy import AdaptiveTinyLFUPolicy
from otel_mcp.compose.engine import ComposeRequest, Composition, compose
from otel_mcp.compose.service import ComposeService
from otel_mcp.store.model import Activation, Rule
from otel_mcp.store.sqlite import RuleStore

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "awesome-cursorrules" / "rules"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the rule corpus {CORPUS} (../shared relative to the repo root) is missing"
)


def _body(name: str, words: int = 120) -> str:
    rng = random.Random(name)
    vocab = ["use", "typed", "functions", "tests", "prefer", "small", "modules", "avoid", "globals", "document"]
    return f"# {name}\n\n" + " ".join(rng.choice(vocab) for _ in range(words)) + "\n"


def _store(path: Path, rules: int = 12) -> RuleStore:
    store = RuleStore(path / "rules.db")
    for i in range(rules):
        store.create(
            {
                "id": f"rule-{i}",
                "body": _body(f"rule-{i}"),
                "activation": "always" if i < 2 else "auto",
                "globs": [f"**/*.e{i % 5}"],
            }
        )
    return store


def _request(*exts: int) -> ComposeRequest:
    return ComposeRequest.from_args(context_files=[f"src/f.e{e}" for e in exts])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RuleStore]:
    s = _store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[TieredCache]:
    c = TieredCache(tmp_path / "cache")
    yield c
    l2 = c._l2
    if l2 is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            l2.check()  # integrity: the SQLite file and value files agree
    c.close()


def test_hit_miss_counters(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    first = service.compose(_request(2))
    assert (cache.l1_hits, cache.l2_hits, cache.misses, cache.puts) == (0, 0, 1, 1)
    assert service.compose(_request(2)).to_dict() == first.to_dict()
    assert cache.l1_hits == 1
    cache.clear_l1(bodies=True)
    assert service.compose(_request(2)).to_dict() == first.to_dict()
    stats = cache.stats()
    assert (stats.l1_hits, stats.l2_hits, stats.misses, stats.errors) == (1, 1, 1, 0)
    assert stats.hit_ratio == pytest.approx(2 / 3)
    assert stats.to_dict()["lookups"] == 3


def test_diskcache_statistics_off(cache: TieredCache) -> None:
    assert cache._l2 is not None
    assert cache._l2.statistics == 0
    assert cache._l2.eviction_policy == "least-recently-stored"


@pytest.mark.parametrize("policy", ["lru", "s3fifo", "tinylfu", "wtinylfu"])
def test_l1_byte_bound(tmp_path: Path, store: RuleStore, policy: str) -> None:
    with TieredCache(tmp_path / "c", l1_bytes=20_000, l1_policy=policy) as small:
        service = ComposeService(store, small)
        for i in range(40):
            service.compose(ComposeRequest.from_args(context_files=[f"x{i}/f.e{i % 5}"]))
            assert small._l1.weight <= 20_000
        assert 0 < len(small._l1) < 40


def test_unknown_policy_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="l1_policy"):
        TieredCache(tmp_path / "c", l1_policy="random")


def test_lru_eviction_order() -> None:
    lru: LRUPolicy[str] = LRUPolicy(3)
    for k in "abc":
        lru.put(k, k, 1)
    lru.get("a")
    lru.put("d", "d", 1)
    assert "b" not in lru and {"a", "c", "d"} <= {k for k in "abcd" if k in lru}
    lru.put("huge", "x", 4)  # heavier than the whole cache: not kept
    assert "huge" not in lru and lru.weight == 3


def test_s3fifo_keeps_reused_entries_over_a_scan() -> None:
    s3: S3FIFOPolicy[int] = S3FIFOPolicy(20)
    for k in range(10):
        s3.put(f"hot{k}", k, 1)
        s3.get(f"hot{k}")
    for k in range(200):
        s3.put(f"scan{k}", k, 1)
    assert sum(f"hot{k}" in s3 for k in range(10)) >= 8
    assert s3.weight <= 20


@pytest.mark.parametrize("policy_class", [TinyLFUPolicy, AdaptiveTinyLFUPolicy])
def test_tinylfu_rejects_one_hit_wonders(policy_class: type[TinyLFUPolicy[int]]) -> None:
    lfu = policy_class(100, expected_entries=100)
    for _ in range(5):
        for k in range(90):
            if lfu.get(f"hot{k}") is None:
                lfu.put(f"hot{k}", k, 1)
    for k in range(1000):
        lfu.get(f"scan{k}")
        lfu.put(f"scan{k}", k, 1)
    assert sum(f"hot{k}" in lfu for k in range(90)) >= 80
    assert lfu.weight <= 100
    kept = next(k for k in range(90) if f"hot{k}" in lfu)  # which ones survive depends on the hash seed
    assert lfu.pop(f"hot{kept}") == kept and f"hot{kept}" not in lfu
    lfu.clear()
    assert len(lfu) == 0 and lfu.weight == 0


def test_compression_flag() -> None:
    text = (_body("a", 2000)).encode()
    assert encode(b"short", 1024, 5, 0.1)[0] == FLAG_RAW
    packed = encode(text, 1024, 5, 0.1)
    assert packed[0] == FLAG_BROTLI and len(packed) < len(text) / 2
    noise = random.Random(1).randbytes(4096)
    assert encode(noise, 1024, 5, 0.1)[0] == FLAG_RAW  # saves under 10%: stored raw
    for value in (b"short", text, noise):
        assert decode(encode(value, 1024, 5, 0.1)) == value
    with pytest.raises(CorruptValue):
        decode(b"\x07abc")
    with pytest.raises(CorruptValue):
        decode(bytes((FLAG_BROTLI,)) + b"not brotli")


def test_brotli_disk_in_diskcache(tmp_path: Path) -> None:
    text = _body("disk", 20_000).encode()  # large enough to land in a value file
    with diskcache.Cache(str(tmp_path), disk=BrotliDisk, disk_compress_quality=4) as dc:
        dc.set("k", text)
        dc.set("obj", {"not": "bytes"})
        assert dc.get("k") == text
        assert dc.get("obj") == {"not": "bytes"}
        raw = dc._sql("SELECT value, filename FROM Cache WHERE key = 'k'").fetchone()
        stored = raw[0] if raw[0] is not None else (tmp_path / raw[1]).read_bytes()
        assert stored[0] == FLAG_BROTLI and len(stored) < len(text) / 2
        assert dc.disk.compress_quality == 4


def test_content_addressing_roundtrip(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store)
    a = service.compose(_request(2, 3))
    b = service.compose(_request(2, 4))
    ea, eb = encode_composition(a), encode_composition(b)
    shared = set(ea.bodies) & set(eb.bodies)
    assert len(shared) >= 3  # the always rules and the *.e2 rules
    assert decode_composition(ea.skeleton, lambda ds: {d: ea.bodies[d].decode() for d in ds}) is not None
    decoded = decode_composition(ea.skeleton, lambda ds: {d: ea.bodies[d].decode() for d in ds})
    assert decoded is not None and decoded[0].to_dict() == a.to_dict()
    cache.put("k:a", a)
    cache.put("k:b", b)
    assert cache.bodies_reused == len(shared)
    cache.clear_l1(bodies=True)
    got = cache.get("k:b")
    assert got is not None and got.to_dict() == b.to_dict()
    assert cache._l2 is not None
    stored_bodies = [k for k in cache._l2 if k.startswith("b:")]
    assert len(stored_bodies) == len(set(ea.bodies) | set(eb.bodies))


def test_roundtrip_of_stubs_index_and_marker_lookalikes(cache: TieredCache) -> None:
    auto = {"activation": Activation.AUTO, "globs": ("*.py",)}
    rules = [
        Rule(id="a", body=_body("a", 400), **auto),  # type: ignore[arg-type]
        Rule(id="b", body="<!-- rule:fake@1 -->\n" + _body("b", 300), priority=5, **auto),  # type: ignore[arg-type]
        Rule(id="c", body=_body("c", 900), **auto),  # type: ignore[arg-type]
        Rule(id="d", body="tiny", activation=Activation.AGENT_REQUESTED, description="ask"),
    ]
    composition = compose(rules, ComposeRequest.from_args(context_files=["m.py"], token_budget=700))
    assert " stub -->" in composition.markdown and "rules:index" in composition.markdown
    cache.put("k", composition)
    cache.clear_l1(bodies=True)
    got = cache.get("k")
    assert got is not None and got.to_dict() == composition.to_dict()


@needs_corpus
def test_content_addressing_on_the_corpus(tmp_path: Path) -> None:
    bodies = [p.read_text(errors="replace") for p in sorted(CORPUS.glob("*.mdc"))[:60]]
    store = RuleStore(tmp_path / "r.db")
    for i, body in enumerate(bodies):
        store.create({"id": f"c{i}", "body": body, "activation": "auto", "globs": [f"**/*.e{i % 6}"]})
    service = ComposeService(store)
    with TieredCache(tmp_path / "c") as cache:
        raw = 0
        for i in range(6):
            for j in range(6):
                composition = service.compose(_request(i, j))
                raw += len(json.dumps(composition.to_dict()))
                cache.put(f"k{i}{j}", composition)
                cache.clear_l1(bodies=True)
                got = cache.get(f"k{i}{j}")
                assert got is not None and got.to_dict() == composition.to_dict()
        assert 50 <= cache.bodies_written <= 60 and cache.bodies_reused > cache.bodies_written
        assert cache._l2 is not None
        stored = sum(len(cache._l2.get(k) or b"") for k in cache._l2)  # decoded sizes: an upper bound
        assert raw / stored > 4
    store.close()


def test_missing_body_degrades_to_miss_then_recovers(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    cache.body_source = None  # bodies only from L2 (as for a rule set that lacks them), so deleting them bites
    first = service.compose(_request(1))
    assert cache._l2 is not None
    for key in [k for k in cache._l2 if k.startswith("b:")]:
        cache._l2.delete(key)
    cache.clear_l1(bodies=True)
    assert service.compose(_request(1)).to_dict() == first.to_dict()
    assert cache.misses == 2 and cache.errors == 0
    cache.clear_l1(bodies=True)
    service.compose(_request(1))  # the put after the miss stored the bodies again
    assert cache.l2_hits == 1


def test_corrupt_value_degrades_to_miss(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    first = service.compose(_request(3))
    assert cache._l2 is not None
    cache._l2._sql("UPDATE Cache SET value = ? WHERE key LIKE 'c:%'", (b"\x01garbage",))
    cache.clear_l1(bodies=True)
    assert service.compose(_request(3)).to_dict() == first.to_dict()
    assert cache.errors == 1 and cache.misses == 2
    cache.clear_l1(bodies=True)
    assert service.compose(_request(3)).to_dict() == first.to_dict()  # the damaged entry was replaced
    assert cache.l2_hits == 1


def test_corrupt_database_file_is_set_aside(tmp_path: Path, store: RuleStore) -> None:
    directory = tmp_path / "damaged"
    directory.mkdir()
    (directory / "cache.db").write_bytes(b"this is not a database" * 100)
    with TieredCache(directory) as cache:
        assert cache.errors == 1 and cache._l2 is not None
        service = ComposeService(store, cache)
        service.compose(_request(1))
        cache.clear_l1(bodies=True)
        service.compose(_request(1))
        assert cache.l2_hits == 1
    assert list(directory.glob("cache.db.corrupt-*"))


def test_unopenable_directory_runs_without_l2(tmp_path: Path, store: RuleStore) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with TieredCache(blocker) as cache:
        assert cache._l2 is None and cache.errors >= 1
        service = ComposeService(store, cache)
        first = service.compose(_request(1))
        assert service.compose(_request(1)) is first  # L1 still works
        assert cache.stats().l2_enabled is False
        assert cache.clear() == 0


def test_deleted_directory_degrades_and_reopens(tmp_path: Path, store: RuleStore) -> None:
    directory = tmp_path / "gone"
    with TieredCache(directory) as cache:
        service = ComposeService(store, cache)
        first = service.compose(_request(2))
        shutil.rmtree(directory)
        cache.clear_l1(bodies=True)
        assert service.compose(_request(2)).to_dict() == first.to_dict()
        assert directory.is_dir()  # reopened empty
        cache.clear_l1(bodies=True)
        service.compose(_request(2))
        assert cache.l2_hits == 1


def test_full_disk_degrades_to_miss(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch.object(BrotliDisk, "store", side_effect=full):
        first = service.compose(_request(4))
    assert cache.errors == 1
    assert service.compose(_request(4)) is first  # L1 kept it
    cache.clear_l1(bodies=True)
    assert service.compose(_request(4)).to_dict() == first.to_dict()
    assert cache.misses == 2  # nothing reached L2


def test_timeout_degrades_to_miss(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    service.compose(_request(4))
    cache.clear_l1(bodies=True)
    assert cache._l2 is not None
    with mock.patch.object(cache._l2, "get", side_effect=diskcache.Timeout("database is locked")):
        assert service.compose(_request(4)) is not None
    assert cache.errors == 1 and cache.misses == 2


def test_locked_l2_put_times_out_quickly(tmp_path: Path, store: RuleStore) -> None:
    with TieredCache(tmp_path / "c", timeout=0.05) as cache:
        blocker = sqlite3.connect(str(tmp_path / "c" / "cache.db"), timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            ComposeService(store, cache).compose(_request(1))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert cache.errors >= 1


def test_restart_persistence(tmp_path: Path, store: RuleStore) -> None:
    with TieredCache(tmp_path / "c") as cache:
        first = ComposeService(store, cache, observer=cache).compose(_request(1))
    with TieredCache(tmp_path / "c") as again:
        service = ComposeService(store, again)
        assert service.compose(_request(1)).to_dict() == first.to_dict()
        assert again.l2_hits == 1
        assert again.popularity.top(1)[0][0] == _request(1).key()


def test_write_invalidates(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    before = service.compose(_request(0))
    rule = store.get("rule-0")
    store.update("rule-0", rule.version, {"body": "changed body " * 40})
    after = service.compose(_request(0))
    assert "changed body" in after.markdown and after.composition_hash != before.composition_hash


def test_clear(store: RuleStore, cache: TieredCache) -> None:
    service = ComposeService(store, cache)
    service.compose(_request(0))
    assert cache.clear() > 1
    assert cache.stats().l2_entries == 0 and cache.stats().l1_entries == 0
    service.compose(_request(0))
    assert cache.misses == 2


def test_popularity_decay_and_top() -> None:
    now = [1000.0]
    pop = Popularity(half_life=10.0, top_n=2, clock=lambda: now[0])
    for _ in range(4):
        pop.add("old")
    now[0] += 30.0  # three half-lives: 4 -> 0.5
    pop.add("new")
    pop.add("other")
    pop.add("other")
    top = pop.top()
    assert [k for k, _ in top] == ["other", "new"]
    assert pop.top(3)[2] == ("old", pytest.approx(0.5))


def test_popularity_snapshot_merges(tmp_path: Path) -> None:
    path = tmp_path / POPULARITY_FILE
    a, b = Popularity(), Popularity()
    a.add("x", 5)
    b.add("y", 3)
    a.save(path)
    b.save(path)  # merges with a's snapshot
    c = Popularity()
    assert c.load(path)
    assert {k for k, _ in c.top()} == {"x", "y"}
    path.write_text("{broken")
    assert not Popularity().load(path)
    assert not Popularity().load(tmp_path / "missing.json")


def test_popularity_saved_periodically(tmp_path: Path, store: RuleStore) -> None:
    with TieredCache(tmp_path / "c", snapshot_interval=0.0) as cache:
        ComposeService(store, cache, observer=cache).compose(_request(2))
        assert (tmp_path / "c" / POPULARITY_FILE).exists()


def test_request_from_key_roundtrip() -> None:
    request = ComposeRequest.from_args(context_files=["a/b.py"], tags=["t"], rule_ids=["x"], agent="z",
                                       token_budget=9)
    assert request_from_key(request.key()) == request


def test_warming_hottest_first(tmp_path: Path, store: RuleStore) -> None:
    with TieredCache(tmp_path / "c") as cache:
        service = ComposeService(store, cache, observer=cache)
        for ext, uses in ((1, 5), (2, 3), (3, 1)):
            for _ in range(uses):
                service.compose(_request(ext))
    with TieredCache(tmp_path / "c") as cache:
        service = ComposeService(store, cache, observer=cache)
        seen: list[int] = []
        progress = start_warming(service, cache, on_progress=lambda p: seen.append(p.done))
        assert progress.finished.wait(10)
        assert progress.total == 4 and progress.done == 4 and progress.failed == 0
        assert progress.from_l2 == 3 and progress.composed == 1  # the empty request was never composed
        assert seen == [1, 2, 3, 4]
        assert (cache.l1_hits, cache.misses) == (0, 0)  # warming is not traffic
        service.compose(_request(1))
        assert cache.l1_hits == 1
        assert progress.to_dict()["finished"] is True


def test_warming_skips_failures_and_new_generations(tmp_path: Path, store: RuleStore) -> None:
    with TieredCache(tmp_path / "c") as cache:
        service = ComposeService(store, cache, observer=cache)
        service.compose(ComposeRequest.from_args(rule_ids=["rule-5"]))
        service.compose(_request(1))
    rule = store.get("rule-5")
    store.delete("rule-5", rule.version)
    with TieredCache(tmp_path / "c") as cache:
        progress = warm(ComposeService(store, cache), cache)
        assert progress.failed == 1 and progress.composed == 2  # the generation moved: recomposed


def test_cli(tmp_path: Path, store: RuleStore) -> None:
    parser = argparse.ArgumentParser()
    cache_cli.register_cli(parser.add_subparsers())
    common = ["--db", str(store.path), "--cache-dir", str(tmp_path / "cc")]

    def run(*argv: str) -> dict[str, object]:
        args = parser.parse_args(list(argv))
        out = io.StringIO()
        with redirect_stdout(out):
            assert args.func(args) == 0
        result: dict[str, object] = json.loads(out.getvalue())
        return result

    warmed = run("cache", "warm", *common)
    assert warmed["done"] == 1 and warmed["composed"] == 1
    stats = run("cache", "stats", *common)
    assert stats["l2_entries"] >= 1 and stats["errors"] == 0
    assert run("cache", "clear", *common)["removed"] == stats["l2_entries"]


def test_get_and_put_never_raise(cache: TieredCache) -> None:
    bad = Composition("", [], [], [], {"x": object()}, [], 0, None, "h")  # settings not JSON-serializable
    cache.put("k", bad)
    assert cache.errors == 1
    assert cache.get("k") is None
