"""A deterministic Zipf sampler: rank ``k`` (0-based) is drawn with probability ~ 1/(k+1)^s.

Pure Python over ``random.Random(seed)`` with a precomputed CDF, so the same
seed gives the same sequence on every machine and Python version.
"""

from __future__ import annotations

import bisect
import itertools
import random


class Zipf:
    def __init__(self, n: int, s: float = 1.0, seed: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        if s < 0:
            raise ValueError("s must be >= 0")
        self.n = n
        self.s = s
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        self._cdf = list(itertools.accumulate(w / total for w in weights))
        self._cdf[-1] = 1.0
        self._rng = random.Random(seed)

    def probability(self, rank: int) -> float:
        return float(self._cdf[rank] - (self._cdf[rank - 1] if rank else 0.0))

    def sample(self) -> int:
        return min(self.n - 1, bisect.bisect_left(self._cdf, self._rng.random()))

    def samples(self, count: int) -> list[int]:
        return [self.sample() for _ in range(count)]
