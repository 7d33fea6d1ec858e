"""The adaptive W-TinyLFU (``wtinylfu``): admission, the hill climber, the byte bound, removal."""

from __future__ import annotations

import random

import pytest
from policy_support import replay

from otel_mcp.cache.policy import CLIMB_STEP_FRACTION, AdaptiveTinyLFUPolicy


def test_climber_steps_while_the_hit_rate_rises_and_turns_when_it_falls() -> None:
    policy: AdaptiveTinyLFUPolicy[int] = AdaptiveTinyLFUPolicy(1000, window_fraction=0.5)
    step = int(CLIMB_STEP_FRACTION * 1000)
    start = policy.window_capacity
    policy._hits, policy._misses = 10, 90  # first sample: a rise from 0, so keep Caffeine's first direction (shrink)
    policy._climb()
    assert policy.window_capacity == start - step
    policy._hits, policy._misses = 9, 91  # a small fall: turn round; the next step is decayed
    policy._climb()
    assert policy.window_capacity == start
    assert policy._step == pytest.approx(0.98 * CLIMB_STEP_FRACTION * 1000)
    policy._hits, policy._misses = 50, 50  # a jump of 41 points: keep going, and restart at the full step
    policy._climb()
    assert policy.window_capacity > start
    assert policy._step == pytest.approx(CLIMB_STEP_FRACTION * 1000)


def test_window_grows_when_recency_pays() -> None:
    """Working sets of 60 % of capacity, each replaced by fresh keys after a short while.

    The climb is a heuristic over sampled hit ratios, and the sketch's collisions depend on the string hash
    (``PYTHONHASHSEED``): one trace can leave the window small (3 entries under seed 25), so the window the
    median of three traces ends with is what must grow (215-342 over seeds 0-61)."""
    windows = []
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        keys: list[int] = []
        for phase in range(150):
            keys.extend(phase * 1000 + rng.randrange(300) for _ in range(1500))
        policy: AdaptiveTinyLFUPolicy[int] = AdaptiveTinyLFUPolicy(500, expected_entries=500, sample_factor=2)
        replay(policy, keys)
        windows.append(policy.window_capacity)
    assert sorted(windows)[1] > 0.2 * 500  # from 1 %


def test_window_shrinks_when_frequency_pays() -> None:
    """A hot set that fits, between one-off keys: a big LRU window lets the one-offs push the hot keys out."""
    rng = random.Random(1)
    keys = [rng.randrange(150) if i % 2 else 10_000 + i for i in range(100_000)]
    policy: AdaptiveTinyLFUPolicy[int] = AdaptiveTinyLFUPolicy(250, expected_entries=250, window_fraction=0.5)
    assert replay(policy, keys) > 0.45
    assert policy.window_capacity < 0.1 * 250


def test_byte_bound_under_random_weights() -> None:
    rng = random.Random(7)
    policy: AdaptiveTinyLFUPolicy[int] = AdaptiveTinyLFUPolicy(5_000)
    policy._sample = 50  # climb often, so resizing is exercised too
    for i in range(20_000):
        key = f"k{int(rng.paretovariate(1.0) * 10) % 2000}"
        if policy.get(key) is None:
            policy.put(key, i, rng.choice((1, 10, 100, 1_000, 4_000, 6_000)))
        assert policy.weight <= policy.capacity
        if i % 1000 == 0:
            parts = (policy._window, policy._probation, policy._protected)
            assert policy.weight == sum(e.weight for part in parts for e in part.values())
            assert policy._window_weight == sum(e.weight for e in policy._window.values())
            assert 1 <= policy.window_capacity <= policy.capacity
    assert "big" not in policy
    policy.put("big", -1, 5_001)  # heavier than the whole cache: not kept
    assert "big" not in policy and policy.weight <= 5_000


def test_sketch_follows_the_entries_held() -> None:
    policy: AdaptiveTinyLFUPolicy[int] = AdaptiveTinyLFUPolicy(10_000)
    first = policy._sketch_entries
    for k in range(3 * first):
        policy.put(f"k{k}", k, 1)
    assert policy._sketch_entries >= len(policy) > first


def test_pop_and_clear() -> None:
    policy: AdaptiveTinyLFUPolicy[str] = AdaptiveTinyLFUPolicy(10, expected_entries=10)
    for k in "abcdefgh":
        policy.put(k, k.upper(), 1)
        policy.get(k)
    kept = next(k for k in "abcdefgh" if k in policy)
    assert policy.pop(kept) == kept.upper() and kept not in policy
    assert policy.pop(kept) is None
    assert policy.weight == len(policy)
    policy.clear()
    assert len(policy) == 0 and policy.weight == 0 and policy.get("a") is None
