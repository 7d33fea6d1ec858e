"""Decayed popularity of composition requests, persisted as a small JSON snapshot.

Each request (its canonical ``ComposeRequest.key()``) has a count that halves
every ``half_life`` seconds, so yesterday's burst does not outrank this hour's
steady traffic. The snapshot keeps the top ``top_n``; on start the cache warms
L1 from it, hottest first. Several processes may share one cache directory:
saving merges with the snapshot on disk (the larger decayed count wins), and
the file is replaced atomically, so a reader never sees half a snapshot.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_mcp.compose.engine import ComposeRequest

logger = logging.getLogger(__name__)

DEFAULT_HALF_LIFE = 3600.0  # seconds; an hour-old use counts half
DEFAULT_TOP_N = 256  # requests kept in the snapshot and warmed at start
MAX_TRACKED = 8192  # requests tracked in memory before the coldest half is dropped
SNAPSHOT_VERSION = 1


def request_from_key(key: str) -> ComposeRequest:
    """The request whose ``key()`` is ``key`` (keys are already normalized)."""
    files, tags, ids, agent, budget = json.loads(key)
    return ComposeRequest(tuple(files), tuple(tags), tuple(ids), agent, budget)


class Popularity:
    """:param float half_life: seconds for a count to halve (default 3600)
    :param int top_n: entries kept by ``top`` and in the snapshot (default 256)
    :param clock: time source in seconds (default ``time.time``)
    """

    def __init__(
        self,
        half_life: float = DEFAULT_HALF_LIFE,
        top_n: int = DEFAULT_TOP_N,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.half_life = half_life
        self.top_n = top_n
        self.clock = clock
        self._counts: dict[str, tuple[float, float]] = {}  # key -> (count, as of time)
        self._lock = threading.Lock()

    def _decayed(self, count: float, since: float, now: float) -> float:
        return count * math.pow(0.5, max(0.0, now - since) / self.half_life)

    def observe(self, request: ComposeRequest) -> None:
        self.add(request.key())

    def add(self, key: str, weight: float = 1.0) -> None:
        now = self.clock()
        with self._lock:
            count, since = self._counts.get(key, (0.0, now))
            self._counts[key] = (self._decayed(count, since, now) + weight, now)
            if len(self._counts) > MAX_TRACKED:
                self._prune(now, MAX_TRACKED // 2)

    def _prune(self, now: float, keep: int) -> None:
        ranked = sorted(self._counts.items(), key=lambda kv: -self._decayed(kv[1][0], kv[1][1], now))
        self._counts = dict(ranked[:keep])

    def top(self, n: int | None = None) -> list[tuple[str, float]]:
        """The ``n`` (default ``top_n``) hottest request keys with their decayed counts, hottest first."""
        now = self.clock()
        with self._lock:
            scored = [(k, self._decayed(c, t, now)) for k, (c, t) in self._counts.items()]
        scored.sort(key=lambda kv: (-kv[1], kv[0]))
        return scored[: self.top_n if n is None else n]

    def __len__(self) -> int:
        return len(self._counts)

    def merge(self, entries: list[tuple[str, float]], at: float) -> None:
        """Fold in counts measured at time ``at``; per key, the larger decayed count wins."""
        now = self.clock()
        with self._lock:
            for key, count in entries:
                theirs = self._decayed(count, at, now)
                ours = self._counts.get(key)
                if ours is None or self._decayed(ours[0], ours[1], now) < theirs:
                    self._counts[key] = (theirs, now)

    def to_dict(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, "saved_at": self.clock(), "top": self.top()}

    def save(self, path: Path) -> None:
        """Merge with the snapshot at ``path`` (if any) and replace it atomically.

        :raises OSError: when the directory is not writable
        """
        self.load(path)
        data = json.dumps(self.to_dict(), separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".popularity-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: Path) -> bool:
        """Merge the snapshot at ``path``; a missing or unreadable one is skipped (returns False)."""
        try:
            data = json.loads(path.read_text())
            if data.get("version") != SNAPSHOT_VERSION:
                return False
            self.merge([(str(k), float(c)) for k, c in data["top"]], float(data["saved_at"]))
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("popularity snapshot %s unreadable, ignored: %s", path, exc)
            return False
        return True
