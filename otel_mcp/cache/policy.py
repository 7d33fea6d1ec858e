"""Eviction policies bounded by weight (bytes), shared by L1 and ``otel_mcp/loadtest/cache_sim.py``.

Each policy maps keys to values, each with a weight, and keeps the total
weight at or under ``capacity`` by evicting. They are not thread-safe: the
L1 cache holds its lock around every call. The simulator replays traces
through the very same classes, so the figures in ``docs/cache.md`` describe
the code that runs.

- ``LRUPolicy``: least recently used.
- ``S3FIFOPolicy``: S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO,
  a main FIFO with re-insertion, and a ghost FIFO of recently evicted keys; by default
  the small FIFO's size adapts, ARC-style, to hits in its ghost and in a main ghost.
- ``TinyLFUPolicy``: W-TinyLFU (Einziger et al., 2017; Caffeine's design): an
  LRU window, then a segmented LRU main area guarded by a frequency sketch
  that admits a newcomer only if it is more popular than the victim.
- ``AdaptiveTinyLFUPolicy``: the same, with Caffeine's hill climber resizing the
  window: a bigger window favours recency (popularity that shifts), a smaller one
  frequency (stable popularity).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

V = TypeVar("V")

S3_SMALL_FRACTION = 0.10  # of capacity, the probationary FIFO (the paper's default; adaptive: the start)
S3_SMALL_MIN = 0.01  # of capacity, the adaptive probationary FIFO's bounds
S3_SMALL_MAX = 0.90
S3_MAX_FREQ = 2  # re-insertions an entry earns in the main FIFO (the paper's 2-bit counter: 3)
TLFU_WINDOW_FRACTION = 0.01  # of capacity, the admission window (Caffeine's default)
TLFU_PROTECTED_FRACTION = 0.80  # of the main area
TLFU_SKETCH_DEPTH = 4
TLFU_MIN_SKETCH_WIDTH = 64  # counters per row
TLFU_MAX_COUNT = 15  # 4-bit counters, as in Caffeine
TLFU_SAMPLE_FACTOR = 10  # age (halve) the sketch after expected entries * this many increments
TLFU_COUNTERS_PER_ENTRY = 4  # per sketch row; Caffeine's table gives each entry about 4 per row
CLIMB_STEP_FRACTION = 0.0625  # of capacity, the hill climber's first step (Caffeine)
CLIMB_STEP_DECAY = 0.98  # each sample without a big change shrinks the step (Caffeine)
CLIMB_RESTART = 0.05  # a hit-rate change this large restarts at the full step (Caffeine)
CLIMB_SAMPLE_FACTOR = 10  # requests per sample, per entry held (Caffeine: the sketch's sample size)
CLIMB_MIN_SAMPLE = 1_000  # requests: below that, sampling noise (~1.5 points) swamps the window's effect


class Policy(Protocol[V]):
    """What the L1 cache and the simulator need from a policy."""

    capacity: int
    weight: int

    def get(self, key: str) -> V | None: ...

    def put(self, key: str, value: V, weight: int) -> None: ...

    def pop(self, key: str) -> V | None: ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...


class LRUPolicy(Generic[V]):
    """:param int capacity: total weight kept (bytes in L1, entries in the simulator)"""

    name = "lru"

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.weight = 0
        self._data: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def get(self, key: str) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: str, value: V, weight: int) -> None:
        self.pop(key)
        if weight > self.capacity:
            return
        self._data[key] = (value, weight)
        self.weight += weight
        while self.weight > self.capacity:
            _, (_, w) = self._data.popitem(last=False)
            self.weight -= w

    def pop(self, key: str) -> V | None:
        item = self._data.pop(key, None)
        if item is None:
            return None
        self.weight -= item[1]
        return item[0]

    def clear(self) -> None:
        self._data.clear()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class _Entry(Generic[V]):
    __slots__ = ("freq", "queue", "value", "weight")

    def __init__(self, value: V, weight: int, queue: int) -> None:
        self.value = value
        self.weight = weight
        self.freq = 0
        self.queue = queue


_SMALL, _MAIN, _WINDOW, _PROBATION, _PROTECTED = range(5)


class S3FIFOPolicy(Generic[V]):
    """S3-FIFO, by default with its small queue sized adaptively (``adaptive=True``).

    The paper's version (``adaptive=False, max_freq=3``) keeps the probationary FIFO at
    10 % of capacity. The adaptive one moves that share the way ARC moves its target
    (Megiddo and Modha, 2003): a request for a key recently evicted from the small queue
    (its ghost) grows the small queue, one for a key recently evicted from the main queue
    (a second ghost, as many keys as the main queue holds) shrinks it; the step is the
    newcomer's weight, times the ratio of the two ghosts' lengths when the other ghost is
    longer. The share stays within 1-90 % of capacity. A key back from either ghost goes to
    the main queue. With the main queue's counter capped at 2 instead of 3, this keeps
    S3-FIFO's hit ratio on stable popularity and stays at LRU's when popularity shifts
    (``docs/cache.md``).

    :param int capacity: total weight kept
    :param float small_fraction: starting (or, not adaptive, fixed) share of capacity for the probationary FIFO
    :param bool adaptive: resize the probationary FIFO from ghost hits (default true)
    :param int max_freq: cap of an entry's hit counter, the re-insertions it earns in the main FIFO (default 2)
    """

    name = "s3fifo"

    def __init__(
        self,
        capacity: int,
        small_fraction: float = S3_SMALL_FRACTION,
        adaptive: bool = True,
        max_freq: int = S3_MAX_FREQ,
    ) -> None:
        self.capacity = capacity
        self.weight = 0
        self.small_capacity: float = max(1, int(capacity * small_fraction))
        self._adaptive = adaptive
        self._max_freq = max_freq
        self._small_bounds = (max(1, int(capacity * S3_SMALL_MIN)), max(1, int(capacity * S3_SMALL_MAX)))
        self._small: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._main: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._ghost: OrderedDict[str, None] = OrderedDict()
        self._main_ghost: OrderedDict[str, None] = OrderedDict()  # only when adaptive
        self._small_weight = 0

    def get(self, key: str) -> V | None:
        entry = self._small.get(key) or self._main.get(key)
        if entry is None:
            return None
        if entry.freq < self._max_freq:  # no reordering on a hit: that is the point of FIFO
            entry.freq += 1
        return entry.value

    def put(self, key: str, value: V, weight: int) -> None:
        self.pop(key)
        if weight > self.capacity:
            return
        if key in self._ghost:
            if self._adaptive:
                step = max(weight, weight * len(self._main_ghost) / len(self._ghost))
                self.small_capacity = min(self._small_bounds[1], self.small_capacity + step)
            del self._ghost[key]
            self._main[key] = _Entry(value, weight, _MAIN)
        elif key in self._main_ghost:
            step = max(weight, weight * len(self._ghost) / len(self._main_ghost))
            self.small_capacity = max(self._small_bounds[0], self.small_capacity - step)
            del self._main_ghost[key]
            self._main[key] = _Entry(value, weight, _MAIN)
        else:
            self._small[key] = _Entry(value, weight, _SMALL)
            self._small_weight += weight
        self.weight += weight
        while self.weight > self.capacity:
            if self._small_weight > self.small_capacity or not self._main:
                self._evict_small()
            else:
                self._evict_main()

    def _evict_small(self) -> None:
        key, entry = self._small.popitem(last=False)
        self._small_weight -= entry.weight
        if entry.freq > 0:
            entry.freq = 0
            entry.queue = _MAIN
            self._main[key] = entry
            return
        self.weight -= entry.weight
        self._ghost[key] = None
        # The ghost remembers about as many keys as the main queue holds.
        while len(self._ghost) > max(len(self._main), 1):
            self._ghost.popitem(last=False)

    def _evict_main(self) -> None:
        while True:
            key, entry = self._main.popitem(last=False)
            if entry.freq > 0:
                entry.freq -= 1
                self._main[key] = entry
                continue
            self.weight -= entry.weight
            if self._adaptive:
                self._main_ghost[key] = None
                while len(self._main_ghost) > max(len(self._main), 1):
                    self._main_ghost.popitem(last=False)
            return

    def pop(self, key: str) -> V | None:
        entry = self._small.pop(key, None)
        if entry is not None:
            self._small_weight -= entry.weight
        else:
            entry = self._main.pop(key, None)
        if entry is None:
            return None
        self.weight -= entry.weight
        return entry.value

    def clear(self) -> None:
        """Drop every entry and both ghosts; the small queue's size is kept, it describes the workload."""
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self._main_ghost.clear()
        self.weight = self._small_weight = 0

    def __len__(self) -> int:
        return len(self._small) + len(self._main)

    def __contains__(self, key: object) -> bool:
        return key in self._small or key in self._main


class FrequencySketch:
    """A count-min sketch of 4-bit counters with periodic halving (TinyLFU's aging).

    Four rows in one flat list, indexed by double hashing of Python's (SipHash) string
    hash: one ``hash`` call and a few integer operations per key, as an L1 hit pays it.

    :param int width: counters per row, rounded up to a power of two
    """

    def __init__(self, width: int) -> None:
        size = TLFU_MIN_SKETCH_WIDTH
        while size < width:
            size *= 2
        self._width = size
        self._mask = size - 1
        self._table = [0] * (size * TLFU_SKETCH_DEPTH)
        self._additions = 0
        self._sample = max(TLFU_MIN_SKETCH_WIDTH, width // TLFU_COUNTERS_PER_ENTRY) * TLFU_SAMPLE_FACTOR

    def add(self, key: str) -> None:
        h = hash(key)
        mask, width, table = self._mask, self._width, self._table
        a = h & mask
        b = (h >> 32) | 1  # odd, so the four probes differ
        if table[a] < TLFU_MAX_COUNT:
            table[a] += 1
        i = width + ((a + b) & mask)
        if table[i] < TLFU_MAX_COUNT:
            table[i] += 1
        i = 2 * width + ((a + 2 * b) & mask)
        if table[i] < TLFU_MAX_COUNT:
            table[i] += 1
        i = 3 * width + ((a + 3 * b) & mask)
        if table[i] < TLFU_MAX_COUNT:
            table[i] += 1
        self._additions += 1
        if self._additions >= self._sample:
            self.halve()

    def halve(self) -> None:
        """Age every counter, so that popularity from long ago fades."""
        self._table = [c >> 1 for c in self._table]
        self._additions //= 2

    def estimate(self, key: str) -> int:
        h = hash(key)
        mask, width, table = self._mask, self._width, self._table
        a = h & mask
        b = (h >> 32) | 1
        return min(
            table[a],
            table[width + ((a + b) & mask)],
            table[2 * width + ((a + 2 * b) & mask)],
            table[3 * width + ((a + 3 * b) & mask)],
        )


class _WindowedTinyLFU(Generic[V]):
    """What both W-TinyLFU policies share: an LRU window, a segmented LRU main area
    (probation, then protected) and admission from the window by the frequency sketch.
    Subclasses create ``sketch`` and define ``get``.
    """

    sketch: FrequencySketch

    def __init__(self, capacity: int, window_fraction: float) -> None:
        self.capacity = capacity
        self.weight = 0
        self.window_capacity = max(1, int(capacity * window_fraction))
        self._protected_capacity = int((capacity - self.window_capacity) * TLFU_PROTECTED_FRACTION)
        self._window: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._probation: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._protected: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._window_weight = 0
        self._protected_weight = 0

    def _find(self, key: str) -> _Entry[V] | None:
        return self._window.get(key) or self._probation.get(key) or self._protected.get(key)

    def _promote(self, key: str, entry: _Entry[V]) -> None:
        """Move ``entry``, just hit and already out of probation, to the protected segment."""
        entry.queue = _PROTECTED
        self._protected[key] = entry
        self._protected_weight += entry.weight
        self._demote()

    def _demote(self) -> None:
        while self._protected_weight > self._protected_capacity and len(self._protected) > 1:
            key, entry = self._protected.popitem(last=False)
            self._protected_weight -= entry.weight
            entry.queue = _PROBATION
            self._probation[key] = entry

    def put(self, key: str, value: V, weight: int) -> None:
        self.pop(key)
        if weight > self.capacity:
            return
        self._window[key] = _Entry(value, weight, _WINDOW)
        self._window_weight += weight
        self.weight += weight
        while self._window_weight > self.window_capacity and len(self._window) > 1:
            candidate_key, candidate = self._window.popitem(last=False)
            self._window_weight -= candidate.weight
            candidate.queue = _PROBATION
            self._probation[candidate_key] = candidate
            self._admit(candidate_key)
        while self.weight > self.capacity:
            self._evict_any()

    def _admit(self, key: str) -> None:
        """Make room in the main area for ``key``, or drop it if it is no more popular than the victim."""
        while self.weight > self.capacity:
            victim_key = next((k for k in self._probation if k != key), None)
            if victim_key is None:
                victim_key = next(iter(self._protected), None)
                if victim_key is None:
                    return
            # Ties go to the victim: a one-hit wonder must not displace an entry of equal standing.
            if self.sketch.estimate(key) > self.sketch.estimate(victim_key):
                self.pop(victim_key)
            else:
                self.pop(key)
                return

    def _evict_any(self) -> None:
        for queue in (self._probation, self._window, self._protected):
            if queue:
                self.pop(next(iter(queue)))
                return

    def pop(self, key: str) -> V | None:
        entry = self._find(key)
        if entry is None:
            return None
        if entry.queue == _WINDOW:
            del self._window[key]
            self._window_weight -= entry.weight
        elif entry.queue == _PROTECTED:
            del self._protected[key]
            self._protected_weight -= entry.weight
        else:
            del self._probation[key]
        self.weight -= entry.weight
        return entry.value

    def clear(self) -> None:
        """Drop every entry; the sketch (and an adaptive window's size) are kept, they describe the workload."""
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self.weight = self._window_weight = self._protected_weight = 0

    def __len__(self) -> int:
        return len(self._window) + len(self._probation) + len(self._protected)

    def __contains__(self, key: object) -> bool:
        return key in self._window or key in self._probation or key in self._protected


class TinyLFUPolicy(_WindowedTinyLFU[V]):
    """:param int capacity: total weight kept
    :param int expected_entries: sizes the frequency sketch (default: capacity / 4 KiB, at least 64)
    :param float window_fraction: share of capacity for the LRU window (default 0.01)
    """

    name = "tinylfu"

    def __init__(
        self, capacity: int, expected_entries: int | None = None, window_fraction: float = TLFU_WINDOW_FRACTION
    ) -> None:
        super().__init__(capacity, window_fraction)
        entries = expected_entries or max(TLFU_MIN_SKETCH_WIDTH, capacity // 4096)
        self.sketch = FrequencySketch(entries * TLFU_COUNTERS_PER_ENTRY)

    def get(self, key: str) -> V | None:
        self.sketch.add(key)
        entry = self._find(key)
        if entry is None:
            return None
        if entry.queue == _WINDOW:
            self._window.move_to_end(key)
        elif entry.queue == _PROTECTED:
            self._protected.move_to_end(key)
        else:
            del self._probation[key]
            self._promote(key, entry)
        return entry.value


class AdaptiveTinyLFUPolicy(_WindowedTinyLFU[V]):
    """W-TinyLFU whose window is resized by Caffeine's hill climber.

    Every sample (``sample_factor`` requests per entry held, at least 1,000) the hit rate is compared with
    the previous sample's; the window keeps moving the same way while the hit rate does
    not fall, turns round when it does, and the step decays by 2 % a sample, back to 6.25 %
    of capacity when the hit rate jumps by 5 points. The window takes its room from the
    protected segment (Caffeine's bound), so it ranges from 1 unit to about 80 % of capacity.

    The sketch is sized on the entries actually held (it doubles, forgetting its counts, when
    they outgrow it), because L1 counts bytes and cannot know its entry count in advance; the
    aging and the sample period follow it.

    :param int capacity: total weight kept
    :param int expected_entries: fixes the sketch size (default: follow the entries held)
    :param float window_fraction: the window's starting share of capacity (default 0.01)
    :param float sample_factor: requests per sample, per entry the sketch is sized for (default 10)
    """

    name = "wtinylfu"

    def __init__(
        self,
        capacity: int,
        expected_entries: int | None = None,
        window_fraction: float = TLFU_WINDOW_FRACTION,
        sample_factor: float = CLIMB_SAMPLE_FACTOR,
    ) -> None:
        super().__init__(capacity, window_fraction)
        self._fixed_sketch = expected_entries is not None
        self._sample_factor = sample_factor
        self._size_sketch(expected_entries or TLFU_MIN_SKETCH_WIDTH)
        self._hits = self._misses = 0
        self._previous_hit_rate = 0.0
        # Caffeine starts by shrinking: the first sample's rise from 0 says "keep going".
        self._step = -CLIMB_STEP_FRACTION * capacity

    def _size_sketch(self, entries: int) -> None:
        self._sketch_entries = entries
        self.sketch = FrequencySketch(entries * TLFU_COUNTERS_PER_ENTRY)
        self._sample = max(CLIMB_MIN_SAMPLE, int(entries * self._sample_factor))

    def get(self, key: str) -> V | None:
        self.sketch.add(key)
        entry = self._window.get(key)
        if entry is not None:
            self._hits += 1
            self._window.move_to_end(key)
            return entry.value
        entry = self._protected.get(key)
        if entry is not None:
            self._hits += 1
            self._protected.move_to_end(key)
            return entry.value
        entry = self._probation.pop(key, None)
        if entry is None:
            self._misses += 1
            # Checked on a miss only, to keep hits cheap: a run of pure hits needs no adapting.
            if self._hits + self._misses >= self._sample:
                self._climb()
            return None
        self._hits += 1
        self._promote(key, entry)
        return entry.value

    def _climb(self) -> None:
        """Move the window by one step, the way that last raised the hit rate (Caffeine's ``climb``)."""
        hit_rate = self._hits / (self._hits + self._misses)
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= CLIMB_RESTART:
            self._step = CLIMB_STEP_FRACTION * self.capacity * (1 if amount >= 0 else -1)
        else:
            self._step = CLIMB_STEP_DECAY * amount
        self._previous_hit_rate = hit_rate
        self._hits = self._misses = 0
        self.resize_window(int(amount))

    def resize_window(self, delta: int) -> None:
        """Grow (``delta`` > 0) or shrink the window, trading room with the protected segment."""
        if delta > 0:
            delta = min(delta, self._protected_capacity)
            self._protected_capacity -= delta
            self.window_capacity += delta
            self._demote()
        elif delta < 0:
            delta = min(-delta, self.window_capacity - 1)
            self.window_capacity -= delta
            self._protected_capacity += delta
            # Total weight is unchanged, so the overflow moves to probation without a contest.
            while self._window_weight > self.window_capacity and len(self._window) > 1:
                key, entry = self._window.popitem(last=False)
                self._window_weight -= entry.weight
                entry.queue = _PROBATION
                self._probation[key] = entry

    def put(self, key: str, value: V, weight: int) -> None:
        super().put(key, value, weight)
        if not self._fixed_sketch and len(self) > self._sketch_entries:
            self._size_sketch(self._sketch_entries * 2)
