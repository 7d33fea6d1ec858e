"""Warming L1 hottest-first: the ``always`` rules, then the popularity snapshot.

Each request is looked up in L2 first (cheap) and composed only when L2 does
not have it for the current generation. Warming does not count as traffic:
it neither moves the hit/miss counters nor feeds the popularity it reads.
``start_warming`` runs in a daemon thread so the server is ready at once;
``WarmProgress`` tells how far it got.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_mcp.cache.core import TieredCache
from otel_mcp.cache.popularity import request_from_key
from otel_mcp.compose.engine import ComposeRequest, compose
from otel_mcp.compose.service import ComposeService

logger = logging.getLogger(__name__)

DEFAULT_WARM_LIMIT = 256  # requests warmed at start, hottest first


@dataclass
class WarmProgress:
    """How far a warm-up got; ``done == total`` and ``finished`` set when it ended."""

    total: int = 0
    done: int = 0
    from_l2: int = 0
    composed: int = 0
    failed: int = 0
    started_at: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    finished: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "total": self.total,
            "done": self.done,
            "from_l2": self.from_l2,
            "composed": self.composed,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed, 3),
            "finished": self.finished.is_set(),
        }


def warm_requests(cache: TieredCache, limit: int = DEFAULT_WARM_LIMIT) -> list[ComposeRequest]:
    """The requests to warm, hottest first: the empty request (``always`` rules) leads."""
    requests = [ComposeRequest()]
    for key, _ in cache.popularity.top(limit):
        try:
            request = request_from_key(key)
        except (ValueError, TypeError) as exc:
            logger.warning("skipping unreadable popularity entry %r: %s", key, exc)
            continue
        if request not in requests:
            requests.append(request)
    return requests[:limit]


def warm(
    service: ComposeService,
    cache: TieredCache,
    limit: int = DEFAULT_WARM_LIMIT,
    progress: WarmProgress | None = None,
    on_progress: Callable[[WarmProgress], None] | None = None,
) -> WarmProgress:
    """Warm L1 now, in this thread; a request that fails to compose is counted and skipped."""
    progress = progress or WarmProgress()
    requests = warm_requests(cache, limit)
    progress.total = len(requests)
    try:
        for request in requests:
            try:
                ruleset = service.ruleset()
                key = service.cache_key(request, ruleset)
                if cache.promote(key):
                    progress.from_l2 += 1
                else:
                    cache.put(key, compose(ruleset.rules, request, service.options))
                    progress.composed += 1
            except Exception as exc:  # a popular request may name a rule deleted since
                progress.failed += 1
                logger.info("warming skipped %s: %s", request.key(), exc)
            progress.done += 1
            progress.elapsed = time.monotonic() - progress.started_at
            if on_progress is not None:
                on_progress(progress)
    finally:
        progress.elapsed = time.monotonic() - progress.started_at
        progress.finished.set()
    logger.info("cache warm-up: %s", progress.to_dict())
    return progress


def start_warming(
    service: ComposeService,
    cache: TieredCache,
    limit: int = DEFAULT_WARM_LIMIT,
    on_progress: Callable[[WarmProgress], None] | None = None,
) -> WarmProgress:
    """Warm in a daemon thread and return at once; wait with ``progress.finished.wait()``."""
    progress = WarmProgress()
    thread = threading.Thread(
        target=warm, args=(service, cache, limit, progress, on_progress), name="otel-mcp-cache-warm", daemon=True
    )
    thread.start()
    return progress
