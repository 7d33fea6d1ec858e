"""Repeated warnings, at most once a minute per key: a client cannot flood the log by repeating a refusal.

``Throttle.allow(key)`` says whether to log now and how many were held back since the last line;
``ThrottleFilter`` applies it to a logger we do not own (the SDK's transport security warns once per
refused request, naming the bad Host or Origin).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

PERIOD_SECONDS = 60.0
MAX_KEYS = 1024  # keys are kinds of warning, not client values; the bound only caps memory


class Throttle:
    """:param period: seconds between two lines of one key (default 60)"""

    def __init__(self, period: float = PERIOD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (last logged, held back since)

    def allow(self, key: str) -> int | None:
        """``None``: hold this one back; else log it, with the number held back since the last line."""
        now = self._clock()
        with self._lock:
            last = self._keys.get(key)
            if last is not None and now - last[0] < self.period:
                self._keys[key] = (last[0], last[1] + 1)
                return None
            self._keys[key] = (now, 0)
            self._keys.move_to_end(key)
            while len(self._keys) > MAX_KEYS:
                self._keys.popitem(last=False)
            return last[1] if last is not None else 0


def held_back(count: int) -> str:
    return f" ({count} more like it in the last minute not logged)" if count else ""


class ThrottleFilter(logging.Filter):
    """Lets a WARNING through at most once a period per kind (its text up to the first ':')."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        count = self.throttle.allow(f"{record.name}:{message.split(':', 1)[0]}")
        if count is None:
            return False
        if count:
            record.msg, record.args = message + held_back(count), None
        return True


def throttle_logger(name: str) -> None:
    """Throttle the warnings of logger ``name`` (once per process, however often called)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ThrottleFilter) for f in logger.filters):
        logger.addFilter(ThrottleFilter())
