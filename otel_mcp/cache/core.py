"""The two-tier composition cache.

L1 is an in-process map of decoded ``Composition`` objects bounded by bytes,
under the eviction policy measured best in ``otel_mcp/loadtest/cache_sim.py``. L2 is a
``diskcache.Cache`` shared by every process using the same directory; it
survives restarts.

L2 stores a composition as a *skeleton* plus *bodies*. The markdown is cut at
the provenance markers (``<!-- rule:id@version -->``); every rule body of at
least ``body_min_bytes`` is stored once under ``b:<sha256>`` (content-addressed,
so immutable and never stale) and the skeleton keeps its digest. Compositions
of overlapping rule sets therefore share the bodies on disk, which is where
most of the stored-bytes reduction comes from (``docs/cache.md``).

Keys come from ``ComposeService.cache_key`` and carry a fingerprint of the rule
set and the composing options, so a rule write in any process makes every older
key unreachable, and servers with other limits never share entries: the cache
never needs invalidating to stay fresh. Old rule sets age out of L2 by its
size limit and out of L1 by its policy.

Every L2 failure (corrupt or deleted files, a full disk, a lock timeout) is
logged, counted in ``errors`` and turned into a miss; ``get`` and ``put``
never raise. A database that SQLite reports as corrupt is moved aside and L2
reopened empty at that first failure, also while the server runs.

Usage::

    cache = TieredCache("/var/cache/otel-mcp")
    service = ComposeService(store, cache, observer=cache)
    start_warming(service, cache)
    ...
    cache.close()
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import diskcache

from otel_mcp.cache.disk import (
    DEFAULT_COMPRESS_QUALITY,
    DEFAULT_COMPRESS_THRESHOLD,
    DEFAULT_MIN_SAVING,
    BrotliDisk,
)
from otel_mcp.cache.policy import AdaptiveTinyLFUPolicy, LRUPolicy, Policy, S3FIFOPolicy, TinyLFUPolicy
from otel_mcp.cache.popularity import Popularity
from otel_mcp.compose.engine import ComposeRequest, Composition
from otel_mcp.throttle import Throttle, held_back

logger = logging.getLogger(__name__)

DEFAULT_L1_BYTES = 64 * 2**20  # 64 MiB of decoded compositions per process
DEFAULT_L1_POLICY = "s3fifo"  # docs/cache.md: ties W-TinyLFU (adaptive too) on Zipf, better when popularity shifts fast
DEFAULT_L2_BYTES = 512 * 2**20  # 512 MiB on disk, bodies and skeletons together
DEFAULT_L2_TIMEOUT = 0.5  # seconds to wait for L2's SQLite lock before giving up (a miss)
DEFAULT_BODY_MIN_BYTES = 256  # bodies below this stay inline in the skeleton
DEFAULT_BODY_MEMO_BYTES = 16 * 2**20  # 16 MiB of decoded bodies kept in memory by digest
DEFAULT_SNAPSHOT_INTERVAL = 60.0  # seconds between popularity snapshots
POPULARITY_FILE = "popularity.json"
SKELETON_VERSION = 1
BODY_PREFIX = "b:"
MARKER = re.compile(r"^<!-- rule:[^\n]*? -->\n", re.MULTILINE)
STUB_SUFFIX = " stub -->\n"

_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_POLICIES: dict[str, Callable[[int], Policy[Composition]]] = {
    "lru": LRUPolicy,
    "s3fifo": S3FIFOPolicy,
    "tinylfu": TinyLFUPolicy,
    "wtinylfu": AdaptiveTinyLFUPolicy,
}


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of the counters; ``errors`` counts failures turned into misses."""

    l1_hits: int
    l2_hits: int
    misses: int
    puts: int
    errors: int
    l1_entries: int
    l1_bytes: int
    l1_capacity: int
    l1_policy: str
    l2_bytes: int
    l2_entries: int
    l2_enabled: bool
    bodies_written: int
    bodies_reused: int
    popularity_tracked: int

    @property
    def lookups(self) -> int:
        return self.l1_hits + self.l2_hits + self.misses

    @property
    def hit_ratio(self) -> float:
        return (self.l1_hits + self.l2_hits) / self.lookups if self.lookups else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(lookups=self.lookups, hit_ratio=round(self.hit_ratio, 4))
        return data


@dataclass
class Encoded:
    """A composition in L2's form: the skeleton and the bodies it references."""

    skeleton: bytes
    bodies: dict[str, bytes]
    weight: int  # memory the decoded composition takes in L1 (see ``memory_weight``)


# Decoded manifests (dicts and lists of small objects) take about this many times their JSON size.
MANIFEST_MEMORY_FACTOR = 6


def memory_weight(markdown: str, manifest_bytes: int) -> int:
    """What a decoded composition costs in memory: L1 is bounded by this, not by encoded bytes.

    A ``str`` holding one non-Latin-1 character stores every character in 2 or 4 bytes, and real
    rule text has emoji and CJK, so UTF-8 length under-counts up to 4x; ``sys.getsizeof`` is exact.
    """
    return sys.getsizeof(markdown) + MANIFEST_MEMORY_FACTOR * manifest_bytes


def body_key(digest: str) -> str:
    return BODY_PREFIX + digest


def encode_composition(composition: Composition, body_min_bytes: int = DEFAULT_BODY_MIN_BYTES) -> Encoded:
    """Cut the markdown into literal text and content-addressed rule bodies."""
    markdown = composition.markdown
    parts: list[str | list[str]] = []
    bodies: dict[str, bytes] = {}
    matches = list(MARKER.finditer(markdown))
    position = 0
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(markdown)
        body = markdown[match.end() : end]
        stripped = body.rstrip("\n")
        raw = stripped.encode()
        literal = markdown[position : match.end()]
        if match.group().endswith(STUB_SUFFIX) or len(raw) < body_min_bytes:
            parts.append(literal + body)
        else:
            digest = hashlib.sha256(raw).hexdigest()
            bodies[digest] = raw
            parts.extend((literal, [digest], body[len(stripped) :]))
        position = end
    parts.append(markdown[position:])
    parts = [p for p in parts if p != ""]
    skeleton = json.dumps(
        {"v": SKELETON_VERSION, "md": parts, "manifest": composition.manifest()}, separators=(",", ":")
    ).encode()
    return Encoded(skeleton, bodies, memory_weight(markdown, len(skeleton)))


def decode_composition(
    skeleton: bytes, fetch_bodies: Callable[[list[str]], dict[str, str]]
) -> tuple[Composition, int] | None:
    """The composition and its L1 weight, or None when a body is missing.

    :param fetch_bodies: digests to bodies; a digest it cannot find is left out
    :raises ValueError: when the skeleton is malformed
    """
    data = json.loads(skeleton)
    if not isinstance(data, dict) or data.get("v") != SKELETON_VERSION:
        raise ValueError("unknown skeleton version")
    parts = data["md"]
    wanted = [p[0] for p in parts if not isinstance(p, str)]
    bodies = fetch_bodies(wanted) if wanted else {}
    if len(bodies) < len(set(wanted)):
        return None
    markdown = "".join(p if isinstance(p, str) else bodies[p[0]] for p in parts)
    return Composition.from_dict({"markdown": markdown, "manifest": data["manifest"]}), memory_weight(
        markdown, len(skeleton)
    )


class TieredCache:
    """L1 in memory, L2 on disk; satisfies ``ComposeService``'s cache and observer protocols.

    :param directory: L2 directory, created if missing; several processes may share it
    :param int l1_bytes: L1 capacity in bytes of serialized compositions (default 64 MiB)
    :param str l1_policy: ``s3fifo``, ``wtinylfu``, ``tinylfu`` or ``lru`` (default ``s3fifo``)
    :param int l2_bytes: L2 size limit in bytes (default 512 MiB)
    :param float timeout: seconds to wait for L2's lock (default 0.5)
    :param int compress_threshold: bytes at or above which L2 values are compressed (default 1 KiB)
    :param int compress_quality: brotli quality (default 2)
    :param int body_min_bytes: smallest rule body stored content-addressed (default 256)
    :param int body_memo_bytes: decoded bodies kept in memory, by digest (default 16 MiB)
    :param float snapshot_interval: seconds between popularity snapshots (default 60)
    :param popularity: the popularity tracker (default a new one, loaded from the directory)
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        l1_bytes: int = DEFAULT_L1_BYTES,
        l1_policy: str = DEFAULT_L1_POLICY,
        l2_bytes: int = DEFAULT_L2_BYTES,
        timeout: float = DEFAULT_L2_TIMEOUT,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        compress_quality: int = DEFAULT_COMPRESS_QUALITY,
        body_min_bytes: int = DEFAULT_BODY_MIN_BYTES,
        body_memo_bytes: int = DEFAULT_BODY_MEMO_BYTES,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
        popularity: Popularity | None = None,
    ) -> None:
        if l1_policy not in _POLICIES:
            raise ValueError(f"l1_policy must be one of {sorted(_POLICIES)}, not {l1_policy!r}")
        self.directory = Path(directory)
        self.l1_policy = l1_policy
        self.l2_bytes = l2_bytes
        self.timeout = timeout
        self.compress_threshold = compress_threshold
        self.compress_quality = compress_quality
        self.body_min_bytes = body_min_bytes
        self.snapshot_interval = snapshot_interval
        self.body_source: Callable[[list[str]], dict[str, str]] | None = None
        self.l1_hits = self.l2_hits = self.misses = self.puts = self.errors = 0
        self._error_log = Throttle()  # a full or read-only disk fails every put: one line a minute per kind
        self.bodies_written = self.bodies_reused = 0
        self._l1: Policy[Composition] = _POLICIES[l1_policy](l1_bytes)
        # Bodies are immutable by digest, so this memo can never be stale; it spares an L2 hit
        # the SQLite reads and brotli work for bodies that other compositions already brought in.
        self._bodies: LRUPolicy[str] = LRUPolicy(body_memo_bytes)
        self._lock = threading.Lock()
        # Bodies this process knows are in L2, so a put skips rewriting them; forgotten when one is missing.
        self._stored_bodies: set[str] = set()
        self._l2: diskcache.Cache | None = None
        self._l2_lock = threading.Lock()
        self._open_l2()
        self.popularity = popularity if popularity is not None else Popularity()
        self._last_snapshot = time.monotonic()
        self._load_popularity()

    # -- public API --------------------------------------------------------

    def get(self, key: str) -> Composition | None:
        """The composition under ``key`` from L1, else L2 (then kept in L1), else None."""
        composition = self._l1_get(key)
        if composition is not None:
            with self._lock:
                self.l1_hits += 1
            return composition
        composition = self._l2_get(key)
        with self._lock:
            if composition is None:
                self.misses += 1
            else:
                self.l2_hits += 1
        return composition

    def put(self, key: str, composition: Composition) -> None:
        """Store in both tiers; an L2 failure is counted and logged, never raised."""
        with self._lock:
            self.puts += 1
        try:
            encoded = encode_composition(composition, self.body_min_bytes)
        except Exception as exc:  # a composition we cannot encode is simply not cached
            self._error("encode", key, exc)
            return
        self._l1_put(key, composition, encoded.weight)
        self._l2_put(key, encoded)

    def promote(self, key: str) -> bool:
        """Load ``key`` from L2 into L1 without counting a lookup (for warming); True if found."""
        if self._l1_contains(key):
            return True
        return self._l2_get(key) is not None

    def observe(self, request: ComposeRequest) -> None:
        """Count one use of ``request`` for the popularity snapshot (``ComposeService``'s observer)."""
        self.popularity.observe(request)
        if time.monotonic() - self._last_snapshot >= self.snapshot_interval:
            self.save_popularity()

    def save_popularity(self) -> bool:
        """Write the popularity snapshot now; False (counted, logged) if it could not be written."""
        self._last_snapshot = time.monotonic()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.popularity.save(self.directory / POPULARITY_FILE)
        except OSError as exc:
            self._error("snapshot", POPULARITY_FILE, exc)
            return False
        return True

    def clear(self) -> int:
        """Empty both tiers (L2 for every process sharing it); returns the L2 entries removed."""
        with self._lock:
            self._l1.clear()
            self._bodies.clear()
        self._stored_bodies.clear()
        l2 = self._l2_handle()
        if l2 is None:
            return 0
        try:
            return int(l2.clear(retry=True))
        except Exception as exc:
            self._error("clear", "*", exc)
            self._recover(l2, exc)
            return 0

    def stats(self) -> CacheStats:
        l2_bytes = l2_entries = 0
        l2 = self._l2_handle()
        if l2 is not None:
            try:
                l2_bytes, l2_entries = int(l2.volume()), len(l2)
            except Exception as exc:
                self._error("stats", "*", exc)
                self._recover(l2, exc)
        with self._lock:
            l1_entries, l1_bytes = len(self._l1), self._l1.weight
        return CacheStats(
            l1_hits=self.l1_hits,
            l2_hits=self.l2_hits,
            misses=self.misses,
            puts=self.puts,
            errors=self.errors,
            l1_entries=l1_entries,
            l1_bytes=l1_bytes,
            l1_capacity=self._l1.capacity,
            l1_policy=self.l1_policy,
            l2_bytes=l2_bytes,
            l2_entries=l2_entries,
            l2_enabled=l2 is not None,
            bodies_written=self.bodies_written,
            bodies_reused=self.bodies_reused,
            popularity_tracked=len(self.popularity),
        )

    def clear_l1(self, bodies: bool = False) -> None:
        """Drop L1 only, and with ``bodies`` the body memo too (benchmarks and tests measure L2 this way)."""
        with self._lock:
            self._l1.clear()
            if bodies:
                self._bodies.clear()

    def close(self) -> None:
        """Save the popularity snapshot and close L2; the object must not be used afterwards."""
        self.save_popularity()
        with self._l2_lock:
            if self._l2 is not None:
                try:
                    self._l2.close()
                except Exception as exc:
                    self._error("close", "*", exc)
                self._l2 = None

    def __enter__(self) -> TieredCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- L1 ----------------------------------------------------------------

    def _l1_get(self, key: str) -> Composition | None:
        with self._lock:
            return self._l1.get(key)

    def _l1_contains(self, key: str) -> bool:
        with self._lock:
            return key in self._l1

    def _l1_put(self, key: str, composition: Composition, weight: int) -> None:
        with self._lock:
            self._l1.put(key, composition, weight)

    # -- L2 ----------------------------------------------------------------

    def _open_l2(self) -> None:
        """Open (or reopen) L2; a damaged database is moved aside once, then L2 stays off."""
        settings: dict[str, Any] = {
            "size_limit": self.l2_bytes,
            "statistics": 0,  # diskcache's own counters make every read a write transaction
            "eviction_policy": "least-recently-stored",  # no write on read, for the same reason
            "disk_compress_threshold": self.compress_threshold,
            "disk_compress_quality": self.compress_quality,
            "disk_min_saving": DEFAULT_MIN_SAVING,
        }
        for attempt in range(2):
            try:
                self._l2 = diskcache.Cache(str(self.directory), timeout=self.timeout, disk=BrotliDisk, **settings)
                return
            except Exception as exc:
                self._error("open", str(self.directory), exc)
                if attempt == 0:
                    self._quarantine_database()
        self._l2 = None

    def _recover(self, l2: diskcache.Cache, exc: BaseException) -> None:
        """After a failure on ``l2``: if SQLite calls the database damaged, move it aside and reopen L2 empty."""
        if getattr(exc, "sqlite_errorcode", None) not in _CORRUPT_CODES:
            return
        with self._l2_lock:
            current = self._l2
            if current is None or current is not l2:  # another thread has recovered it already
                return
            try:
                current.close()
            except Exception as close_exc:
                self._error("close", str(self.directory), close_exc)
            self._stored_bodies.clear()
            self._quarantine_database()
            self._open_l2()

    def _quarantine_database(self) -> None:
        database = self.directory / diskcache.core.DBNAME
        for suffix in ("", "-wal", "-shm"):
            path = database.with_name(database.name + suffix)
            try:
                if path.exists():
                    path.replace(path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
            except OSError as exc:
                self._error("quarantine", str(path), exc)

    def _l2_handle(self) -> diskcache.Cache | None:
        """The L2 cache, reopened if its directory was deleted under us."""
        l2 = self._l2
        if l2 is not None and not self.directory.is_dir():
            with self._l2_lock:
                gone = FileNotFoundError("cache directory disappeared; reopening L2 empty")
                self._error("open", str(self.directory), gone)
                try:
                    l2.close()
                except Exception as exc:
                    self._error("close", str(self.directory), exc)
                self._stored_bodies.clear()
                self._open_l2()
                l2 = self._l2
        return l2

    def _l2_get(self, key: str) -> Composition | None:
        l2 = self._l2_handle()
        if l2 is None:
            return None
        missing: list[str] = []

        def fetch_bodies(digests: list[str]) -> dict[str, str]:
            found = self._memo_bodies(digests)
            if self.body_source is not None and len(found) < len(digests):
                found.update(self.body_source([d for d in digests if d not in found]))
            wanted = [d for d in dict.fromkeys(digests) if d not in found]
            if wanted:
                fetched = self._l2_get_bodies(l2, wanted)
                missing.extend(d for d in wanted if d not in fetched)
                found.update(fetched)
            return found

        try:
            skeleton = l2.get(key, retry=False)
            if skeleton is None:
                return None
            decoded = decode_composition(bytes(skeleton), fetch_bodies)
        except Exception as exc:
            self._error("get", key, exc)
            self._discard(l2, key)
            self._recover(l2, exc)
            return None
        if decoded is None:
            # Evicted or cleared body: the skeleton is useless until a put stores the body again.
            self._stored_bodies.difference_update(missing)
            return None
        composition, weight = decoded
        self._l1_put(key, composition, weight)
        return composition

    def use_body_source(self, source: Callable[[list[str]], dict[str, str]]) -> None:
        """Resolve bodies from ``source`` (digest -> text) before reading L2's copies.

        The composer already holds every current rule body in memory; an L2 hit then needs only
        its skeleton, also in a process that has not read those bodies from disk yet.
        """
        self.body_source = source

    def _memo_bodies(self, digests: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for digest in digests:
                body = self._bodies.get(digest)
                if body is not None:
                    found[digest] = body
        return found

    def _l2_get_bodies(self, l2: diskcache.Cache, digests: list[str]) -> dict[str, str]:
        """Bodies by digest in one SQLite query (diskcache has no multi-get; 50 gets cost ~1 ms).

        Reads diskcache's ``Cache`` table directly: its schema is stable across 5.x and the
        version is pinned. Values still go through ``BrotliDisk.fetch``.
        """
        keys = [body_key(d) for d in digests]
        rows = l2._sql(
            f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({','.join('?' * len(keys))})",
            keys,
        ).fetchall()
        found: dict[str, str] = {}
        for db_key, mode, filename, value in rows:
            try:
                raw = l2._disk.fetch(mode, filename, value, False)
            except OSError:  # a value file deleted under us: that body is missing
                continue
            found[db_key[len(BODY_PREFIX) :]] = bytes(raw).decode()
        with self._lock:
            for digest, body in found.items():
                self._bodies.put(digest, body, sys.getsizeof(body))
        return found

    def _l2_put(self, key: str, encoded: Encoded) -> None:
        l2 = self._l2_handle()
        if l2 is None:
            return
        try:
            new = [d for d in encoded.bodies if d not in self._stored_bodies]
            # One transaction: one lock and one commit for the skeleton and all its new bodies.
            with l2.transact(retry=False):
                for digest in new:
                    l2.add(body_key(digest), encoded.bodies[digest], retry=False)
                l2.set(key, encoded.skeleton, retry=False)
            self._stored_bodies.update(new)
            with self._lock:
                for digest, raw in encoded.bodies.items():
                    if digest not in self._bodies:
                        text = raw.decode()
                        self._bodies.put(digest, text, sys.getsizeof(text))
            self.bodies_written += len(new)
            self.bodies_reused += len(encoded.bodies) - len(new)
        except Exception as exc:
            self._error("put", key, exc)
            self._recover(l2, exc)

    def _discard(self, l2: diskcache.Cache, key: str) -> None:
        try:
            l2.delete(key, retry=False)
        except Exception as exc:
            logger.debug("could not delete damaged entry %s: %s", key, exc)

    def _error(self, operation: str, key: str, exc: BaseException) -> None:
        """Count the failure; log it at most once a minute per (operation, exception type)."""
        with self._lock:
            self.errors += 1
        held = self._error_log.allow(f"{operation}:{type(exc).__name__}")
        if held is not None:
            logger.warning("cache %s failed for %s (served as a miss; %d cache errors so far)%s: %s: %s", operation,
                           key, self.errors, held_back(held), type(exc).__name__, exc)

    def _load_popularity(self) -> None:
        self.popularity.load(self.directory / POPULARITY_FILE)
