"""Composition as a service: the store's current rules, the engine, and a cache.

The service keeps the decoded rule set of the store's current ``generation`` in
memory and reloads it only when the generation moves (one indexed read per
request tells it, also for writes made by other processes). Cache keys carry
a fingerprint of the rule set, so a write can never let a stale composition be served.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Protocol

from otel_mcp.compose.engine import ComposeOptions, ComposeRequest, Composition, compose
from otel_mcp.store.base import Changes, RuleStoreBase
from otel_mcp.store.model import Rule


class CompositionCache(Protocol):
    """What the service needs from a cache; failures must degrade to a miss, never raise."""

    def get(self, key: str) -> Composition | None: ...

    def put(self, key: str, composition: Composition) -> None: ...


class RequestObserver(Protocol):
    """Sees every request composed (popularity tracking for cache warming); must not raise."""

    def observe(self, request: ComposeRequest) -> None: ...


def body_digest(body: str) -> str:
    """How the cache addresses a rule body (the text between provenance markers, newlines trimmed)."""
    return hashlib.sha256(body.strip("\n").encode()).hexdigest()


class RuleSet:
    """The rules of one store generation, by id."""

    def __init__(self, generation: int, rules: list[Rule], parent: RuleSet | None = None) -> None:
        self.generation = generation
        self.rules = {r.id: r for r in rules}
        # Every rule's id, version, content and updated_at (which breaks settings ties): equal
        # fingerprints compose identically. ~0.5 ms for 1,000 rules, once per rule set.
        self.fingerprint = hashlib.blake2b(
            "\n".join(f"{r.id}@{r.version}:{r.etag}:{r.updated_at!r}" for r in sorted(rules, key=lambda r: r.id))
            .encode(),
            digest_size=16,
        ).hexdigest()
        self._parent = parent
        self._by_digest: dict[str, Rule] | None = None
        self._digest_by_etag: dict[str, str] = {}
        self._digest_lock = threading.Lock()

    def updated(self, changes: Changes) -> RuleSet:
        """A new rule set with ``changes`` applied; this one stays valid for readers holding it."""
        rules = dict(self.rules)
        for rule_id in changes.deleted:
            rules.pop(rule_id, None)
        rules.update((r.id, r) for r in changes.written)
        return RuleSet(changes.generation, list(rules.values()), parent=self)

    def bodies(self, digests: list[str]) -> dict[str, str]:
        """The bodies among ``digests`` that rules of this set have (computed once per set)."""
        by_digest = self._by_digest
        if by_digest is None:
            with self._digest_lock:
                by_digest = self._by_digest = self._by_digest or self._digest_map()
        return {d: by_digest[d].body.strip("\n") for d in digests if d in by_digest}

    def _digest_map(self) -> dict[str, Rule]:
        # A rule's etag changes with its content, so digests of unchanged rules come from the parent.
        inherited = self._parent._digest_by_etag if self._parent is not None else {}
        self._parent = None  # the chain must not keep old rule sets alive
        self._digest_by_etag = {
            r.etag: inherited.get(r.etag) or body_digest(r.body) for r in self.rules.values()
        }
        return {self._digest_by_etag[r.etag]: r for r in self.rules.values()}  # rules, not copies of bodies


class ComposeService:
    """:param store: the rule store
    :param cache: optional composition cache (default none)
    :param options: engine limits (default ``ComposeOptions()``)
    :param observer: told of every request, e.g. ``TieredCache`` for popularity (default none)
    """

    def __init__(
        self,
        store: RuleStoreBase,
        cache: CompositionCache | None = None,
        options: ComposeOptions = ComposeOptions(),
        observer: RequestObserver | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.options = options
        self.observer = observer
        self._ruleset = RuleSet(-1, [])
        self._lock = threading.Lock()
        use_body_source = getattr(cache, "use_body_source", None)
        if use_body_source is not None:
            use_body_source(lambda digests: self._ruleset.bodies(digests))  # noqa: PLW0108 - the current set, late-bound

    def ruleset(self) -> RuleSet:
        """The current rules; after a write only the rules that changed are read again."""
        generation = self.store.generation()
        current = self._ruleset
        if current.generation == generation:
            return current
        with self._lock:
            held = self._ruleset
            if held.generation == generation:
                return held
            if held.generation < 0:
                loaded_generation, rules = self.store.snapshot()
                self._ruleset = RuleSet(loaded_generation, rules)
            else:
                self._ruleset = held.updated(self.store.changes_since(held.generation))
            return self._ruleset

    def cache_key(self, request: ComposeRequest, ruleset: RuleSet) -> str:
        """``c:<rule set fingerprint>:<digest of request and options>``: from everything a composition depends on.

        Not from the generation: a database restored from a backup, or copied from a template, repeats
        generation numbers with other contents, and a cache directory that outlived it would serve them.
        The options (``max_import_depth``, ``max_rules``, glob limits) are in it because two servers with
        different settings may share one cache directory.
        """
        digest = hashlib.blake2b(f"{request.key()}|{self.options.key()}".encode(), digest_size=16).hexdigest()
        return f"c:{ruleset.fingerprint}:{digest}"

    def compose(self, request: ComposeRequest) -> Composition:
        if self.observer is not None:
            self.observer.observe(request)
        ruleset = self.ruleset()
        if self.cache is None:
            return compose(ruleset.rules, request, self.options)
        key = self.cache_key(request, ruleset)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        composition = compose(ruleset.rules, request, self.options)
        self.cache.put(key, composition)
        return composition
