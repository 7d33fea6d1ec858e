"""S3-FIFO with the adaptive small queue (the L1 default) against the paper's fixed one."""

from __future__ import annotations

import random

from policy_support import replay

from otel_mcp.cache.policy import LRUPolicy, S3FIFOPolicy


def shifting() -> list[int]:
    """Skewed popularity over 400 keys, replaced by fresh keys every 3,000 requests."""
    rng = random.Random(1)
    return [phase * 1000 + int(rng.paretovariate(1.0)) % 400 for phase in range(20) for _ in range(3000)]


def test_small_queue_grows_when_popularity_shifts() -> None:
    adaptive: S3FIFOPolicy[int] = S3FIFOPolicy(100)
    fixed: S3FIFOPolicy[int] = S3FIFOPolicy(100, adaptive=False, max_freq=3)
    keys = shifting()
    adaptive_ratio, fixed_ratio = replay(adaptive, keys), replay(fixed, keys)
    assert adaptive.small_capacity > 30  # from 10
    assert fixed.small_capacity == 10
    assert adaptive_ratio > fixed_ratio
    assert adaptive_ratio >= replay(LRUPolicy(100), keys) - 0.005


def test_small_queue_shrinks_when_popularity_is_stable() -> None:
    rng = random.Random(2)
    policy: S3FIFOPolicy[int] = S3FIFOPolicy(100)
    replay(policy, [int(rng.paretovariate(0.9)) % 5000 for _ in range(40_000)])
    assert 1 <= policy.small_capacity < 10


def test_ghost_hits_go_to_main_and_bounds_hold() -> None:
    policy: S3FIFOPolicy[int] = S3FIFOPolicy(10)
    for k in range(12):  # k0, k1 fall out of the small queue unused; the ghost keeps k1 (main is empty)
        policy.put(f"k{k}", k, 1)
    assert "k1" not in policy
    policy.put("k1", 1, 1)
    assert "k1" in policy._main and policy.small_capacity == 2  # grew by one weight
    for _ in range(200):  # only ghost hits: the small queue stops at 90 %
        for k in range(40):
            if policy.get(f"k{k}") is None:
                policy.put(f"k{k}", k, 1)
    assert 0.01 * 10 <= policy.small_capacity <= 0.9 * 10


def test_weights_stay_consistent() -> None:
    rng = random.Random(3)
    policy: S3FIFOPolicy[int] = S3FIFOPolicy(1000)
    for step in range(20_000):
        key = f"k{int(rng.paretovariate(0.8)) % 400}"
        if rng.random() < 0.02:
            policy.pop(key)
        elif policy.get(key) is None:
            policy.put(key, step, rng.randint(1, 60))
        assert policy.weight <= policy.capacity
        assert policy.weight == sum(e.weight for q in (policy._small, policy._main) for e in q.values())
        assert policy._small_weight == sum(e.weight for e in policy._small.values())
        assert 10 <= policy.small_capacity <= 900
    policy.put("big", 0, 1001)  # heavier than the whole cache: not kept
    assert "big" not in policy
    policy.clear()
    assert len(policy) == 0 and policy.weight == 0 and not policy._main_ghost
