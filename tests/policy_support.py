"""Replaying a key trace through an L1 policy, as the cache does: a miss puts the key."""

from __future__ import annotations

from otel_mcp.cache.policy import Policy


def replay(policy: Policy[int], keys: list[int], weight: int = 1) -> float:
    """The hit ratio of ``keys`` through ``policy``, each missing key put with ``weight``."""
    hits = 0
    for k in keys:
        if policy.get(f"k{k}") is None:
            policy.put(f"k{k}", k, weight)
        else:
            hits += 1
    return hits / len(keys)
