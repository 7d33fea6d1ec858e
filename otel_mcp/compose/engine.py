"""The composition engine: from a rule set and a request to one markdown document.

Pure and deterministic: the same rules and request give the same output and
``composition_hash``. Each step is a module-level function so that telemetry
(``otel_mcp.telemetry``) can wrap it without this module knowing.

Priority, in one place: a higher ``priority`` is more important. It decides
who wins an ``overrides`` pair and a ``settings`` conflict (ties go to the
newer ``updated_at``, then the smaller id), which optional rules are kept
first under a token budget, and the output order: ascending, so the most
important rule comes last, nearest the agent's task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_mcp.compose.globs import normalize_path, path_selects
from otel_mcp.compose.tokens import estimate_tokens
from otel_mcp.errors import CompositionError, InvalidRule, LimitExceeded
from otel_mcp.store.model import Activation, Rule, check_rule_id

DEFAULT_MAX_IMPORT_DEPTH = 5
DEFAULT_MAX_RULES = 500
MAX_CONTEXT_FILES = 1000
AGENT_TAG_PREFIX = "agent:"


@dataclass(frozen=True)
class ComposeRequest:
    """What an agent asks for. See ``select`` for how each field picks rules."""

    context_files: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    agent: str | None = None
    token_budget: int | None = None

    @classmethod
    def from_args(
        cls,
        context_files: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        rule_ids: Iterable[str] | None = None,
        agent: str | None = None,
        token_budget: int | None = None,
    ) -> ComposeRequest:
        files = tuple(dict.fromkeys(normalize_path(f) for f in (context_files or ())))
        if len(files) > MAX_CONTEXT_FILES:
            raise InvalidRule(f"context_files has {len(files)} entries; the limit is {MAX_CONTEXT_FILES}")
        if any(not f for f in files):
            raise InvalidRule("context_files entries must be non-empty paths")
        ids = tuple(dict.fromkeys(check_rule_id(r, "rule_ids entry") for r in (rule_ids or ())))
        if token_budget is not None and (isinstance(token_budget, bool) or token_budget < 1):
            raise InvalidRule("token_budget must be a positive integer")
        if agent is not None and not agent.strip():
            raise InvalidRule("agent must be a non-empty name")
        return cls(files, tuple(sorted(set(tags or ()))), ids, agent, token_budget)

    def key(self) -> str:
        """A canonical string for this request (cache keys, popularity counts)."""
        return json.dumps(
            [self.context_files, self.tags, self.rule_ids, self.agent, self.token_budget], separators=(",", ":")
        )


@dataclass(frozen=True)
class ComposeOptions:
    max_import_depth: int = DEFAULT_MAX_IMPORT_DEPTH
    max_rules: int = DEFAULT_MAX_RULES


@dataclass
class Selection:
    """A rule on its way into the composition, with why it is there."""

    rule: Rule
    why: str
    pinned: bool  # always rules and rules the caller named are never cut by the budget


@dataclass(frozen=True)
class Conflict:
    key: str
    winner: str
    value: Any
    losers: tuple[tuple[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "winner": {"rule": self.winner, "value": self.value},
            "losers": [{"rule": r, "value": v} for r, v in self.losers],
        }


@dataclass
class Composition:
    markdown: str
    included: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    conflicts: list[Conflict]
    settings: dict[str, Any]
    index: list[dict[str, str]]
    token_estimate: int
    token_budget: int | None
    composition_hash: str

    def manifest(self) -> dict[str, Any]:
        return {
            "composition_hash": self.composition_hash,
            "token_estimate": self.token_estimate,
            "token_budget": self.token_budget,
            "included": self.included,
            "dropped": self.dropped,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "settings": self.settings,
            "index": self.index,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"markdown": self.markdown, "manifest": self.manifest()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Composition:
        m = data["manifest"]
        return cls(
            markdown=data["markdown"],
            included=m["included"],
            dropped=m["dropped"],
            conflicts=[
                Conflict(c["key"], c["winner"]["rule"], c["winner"]["value"],
                         tuple((x["rule"], x["value"]) for x in c["losers"]))
                for c in m["conflicts"]
            ],
            settings=m["settings"],
            index=m["index"],
            token_estimate=m["token_estimate"],
            token_budget=m["token_budget"],
            composition_hash=m["composition_hash"],
        )


@dataclass
class _Work:
    """State passed between the steps."""

    selected: dict[str, Selection] = field(default_factory=dict)
    index: list[Rule] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    ordered: list[Selection] = field(default_factory=list)
    stubbed: set[str] = field(default_factory=set)


def _agent_allows(rule: Rule, agent: str | None) -> bool:
    """Rules tagged ``agent:<name>`` apply only to those agents; untagged rules apply to all."""
    wanted = [t[len(AGENT_TAG_PREFIX) :] for t in rule.tags if t.startswith(AGENT_TAG_PREFIX)]
    return not wanted or (agent is not None and agent in wanted)


def select(rules: Mapping[str, Rule], request: ComposeRequest, work: _Work) -> None:
    """Step 1: pick the rules the request activates.

    - enabled ``always`` rules;
    - rules named in ``rule_ids`` (any activation; unknown ids are an error);
    - enabled ``auto`` rules whose globs match a context file and no exclude glob;
    - ``agent_requested`` rules not named go to the index (id + description) instead.
    ``tags`` narrows the always/auto/index picks to rules carrying one of them;
    ``agent`` drops rules tagged ``agent:<other>``. Named rules are never filtered.
    """
    for rule_id in request.rule_ids:
        rule = rules.get(rule_id)
        if rule is None:
            raise CompositionError(f"rule_ids names rule {rule_id!r}, which does not exist")
        if not rule.enabled:
            work.dropped.append({"id": rule_id, "version": rule.version, "reason": "disabled"})
            continue
        work.selected[rule_id] = Selection(rule, "named in rule_ids", pinned=True)
    wanted_tags = set(request.tags)
    for rule in rules.values():
        if not rule.enabled or rule.id in work.selected or rule.activation is Activation.MANUAL:
            continue
        if wanted_tags and not wanted_tags.intersection(rule.tags):
            continue
        if not _agent_allows(rule, request.agent):
            continue
        if rule.activation is Activation.ALWAYS:
            work.selected[rule.id] = Selection(rule, "always", pinned=True)
        elif rule.activation is Activation.AUTO:
            hit = next(
                (f for f in request.context_files if path_selects(f, rule.globs, rule.exclude_globs)), None
            )
            if hit is not None:
                work.selected[rule.id] = Selection(rule, f"glob matched {hit}", pinned=False)
        else:
            work.index.append(rule)


def expand_imports(rules: Mapping[str, Rule], options: ComposeOptions, work: _Work) -> None:
    """Step 2: add imported rules, depth-first; a cycle or a missing import is an error."""

    def visit(rule: Rule, path: list[str]) -> None:
        for imported_id in rule.imports:
            if imported_id in path:
                cycle = " -> ".join([*path[path.index(imported_id) :], imported_id])
                raise CompositionError(f"import cycle: {cycle}")
            imported = rules.get(imported_id)
            if imported is None:
                raise CompositionError(f"rule {rule.id!r} imports {imported_id!r}, which does not exist")
            # ``path`` holds the root plus one id per import step taken so far: this is step len(path).
            if len(path) > options.max_import_depth:
                raise CompositionError(
                    f"import chain {' -> '.join([*path, imported_id])} is deeper than the limit of "
                    f"{options.max_import_depth} (max_import_depth)"
                )
            if not imported.enabled:
                work.dropped.append(
                    {"id": imported_id, "version": imported.version, "reason": f"disabled (imported by {rule.id})"}
                )
                continue
            if imported_id not in work.selected:
                work.selected[imported_id] = Selection(imported, f"imported by {rule.id}", pinned=False)
            visit(imported, [*path, imported_id])

    for selection in list(work.selected.values()):
        visit(selection.rule, [selection.rule.id])
    work.index = [r for r in work.index if r.id not in work.selected]
    if len(work.selected) > options.max_rules:
        raise LimitExceeded(
            f"composition selects {len(work.selected)} rules; the limit is {options.max_rules} (max_rules)"
        )


def _strength(rule: Rule) -> tuple[int, float, str]:
    """Sort key, strongest first: priority, then newer, then smaller id (negated for descending sort)."""
    return (-rule.priority, -rule.updated_at, rule.id)


def resolve(work: _Work) -> None:
    """Step 3: apply ``overrides`` (strongest rule first) and settle ``settings`` conflicts."""
    removed: set[str] = set()
    for selection in sorted(work.selected.values(), key=lambda s: _strength(s.rule)):
        if selection.rule.id in removed:
            continue
        for target in selection.rule.overrides:
            if target in work.selected and target not in removed and target != selection.rule.id:
                removed.add(target)
                victim = work.selected[target].rule
                work.dropped.append(
                    {"id": target, "version": victim.version, "reason": f"overridden by {selection.rule.id}"}
                )
    for rule_id in removed:
        del work.selected[rule_id]

    by_key: dict[str, list[Rule]] = {}
    for selection in work.selected.values():
        for key in selection.rule.settings:
            by_key.setdefault(key, []).append(selection.rule)
    for key in sorted(by_key):
        contenders = sorted(by_key[key], key=_strength)
        winner = contenders[0]
        work.settings[key] = winner.settings[key]
        losers = tuple((r.id, r.settings[key]) for r in contenders[1:] if r.settings[key] != winner.settings[key])
        if losers:
            work.conflicts.append(Conflict(key, winner.id, winner.settings[key], losers))


def order(work: _Work) -> None:
    """Step 4: priority ascending (most important last), then id."""
    work.ordered = sorted(work.selected.values(), key=lambda s: (s.rule.priority, s.rule.id))


def _stub(rule: Rule) -> str:
    return f"- {rule.id}: {rule.description or '(no description)'}"


def budget(token_budget: int | None, work: _Work) -> None:
    """Step 5: under a budget, keep pinned rules whole, fill the rest by strength, stub the others."""
    if token_budget is None:
        return
    used = sum(estimate_tokens(s.rule.body) for s in work.ordered if s.pinned)
    optional = sorted((s for s in work.ordered if not s.pinned), key=lambda s: _strength(s.rule))
    stub_cost = sum(estimate_tokens(_stub(s.rule)) for s in optional)
    for selection in optional:
        body_cost = estimate_tokens(selection.rule.body)
        own_stub = estimate_tokens(_stub(selection.rule))
        # Reserve room for the stubs of the rules still to come, so the total stays within budget.
        if used + body_cost + (stub_cost - own_stub) <= token_budget:
            used += body_cost
        else:
            work.stubbed.add(selection.rule.id)
            used += own_stub
        stub_cost -= own_stub


def render(work: _Work, request: ComposeRequest) -> Composition:
    """Step 6: the markdown with provenance markers, and the manifest."""
    parts: list[str] = []
    included: list[dict[str, Any]] = []
    for selection in work.ordered:
        rule = selection.rule
        stub = rule.id in work.stubbed
        marker = f"<!-- rule:{rule.id}@{rule.version}{' stub' if stub else ''} -->"
        text = _stub(rule) if stub else rule.body.strip("\n")
        parts.append(f"{marker}\n{text}\n")
        included.append(
            {
                "id": rule.id,
                "version": rule.version,
                "why": selection.why,
                "priority": rule.priority,
                "stubbed": stub,
                "tokens": estimate_tokens(text),
            }
        )
        if stub:
            work.dropped.append({"id": rule.id, "version": rule.version, "reason": "stubbed: over token budget"})
    index = [{"id": r.id, "description": r.description} for r in sorted(work.index, key=lambda r: r.id)]
    if index:
        lines = "\n".join(f"- `{e['id']}`: {e['description'] or '(no description)'}" for e in index)
        parts.append(f"<!-- rules:index -->\n## Rules available on request\n{lines}\n")
    markdown = "\n".join(parts)
    digest = hashlib.sha256(markdown.encode())
    digest.update(json.dumps(work.settings, sort_keys=True, default=str).encode())
    return Composition(
        markdown=markdown,
        included=included,
        dropped=sorted(work.dropped, key=lambda d: (d["id"], d["reason"])),
        conflicts=work.conflicts,
        settings=work.settings,
        index=index,
        token_estimate=estimate_tokens(markdown),
        token_budget=request.token_budget,
        composition_hash=digest.hexdigest(),
    )


def compose(
    rules: Mapping[str, Rule] | Iterable[Rule],
    request: ComposeRequest,
    options: ComposeOptions = ComposeOptions(),
) -> Composition:
    """Compose ``rules`` (by id) for ``request``; raises ``CompositionError`` or ``LimitExceeded``."""
    by_id = rules if isinstance(rules, Mapping) else {r.id: r for r in rules}
    work = _Work()
    select(by_id, request, work)
    expand_imports(by_id, options, work)
    resolve(work)
    order(work)
    budget(request.token_budget, work)
    return render(work, request)


STEPS = ("select", "expand_imports", "resolve", "order", "budget", "render")
