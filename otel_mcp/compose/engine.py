"""The composition engine: from a rule set and a request to one markdown document.

Pure and deterministic: the same rules and request give the same output and
``composition_hash``. Each step is a module-level function so that telemetry
(``otel_mcp.telemetry``) can wrap it without this module knowing.

Priority, in one place: a higher ``priority`` is more important. It decides
who wins an ``overrides`` pair and a ``settings`` conflict (ties go to the
newer ``updated_at``, then the smaller id), which optional rules are kept
first under a token budget, and the output order: ascending, so the most
important rule comes last, nearest the agent's task.

A broken rule (an import that does not exist, an import cycle, an import chain
deeper than ``max_import_depth``, a glob over the limits) does not fail the
composition: it is skipped and listed in the manifest's ``problems``.

A ``token_budget`` bounds the rendered markdown, everything in it, by
``estimate_tokens``: see ``budget``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from otel_mcp.compose.globs import GlobLimits, encode_path, normalize_path, path_selects
from otel_mcp.compose.tokens import estimate_tokens
from otel_mcp.config import Settings, default_setting
from otel_mcp.errors import CompositionError, InvalidRule, LimitExceeded
from otel_mcp.store.model import Activation, Rule, check_rule_id

MAX_CONTEXT_FILES = 1000
PROBLEM_KINDS = ("missing_import", "import_cycle", "import_depth", "invalid_glob")
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
    """The settings that change what a composition contains (so they are part of its cache key)."""

    max_import_depth: int = default_setting("max_import_depth")
    max_rules: int = default_setting("max_rules")
    globs: GlobLimits = field(default_factory=GlobLimits)

    @classmethod
    def from_settings(cls, settings: Settings) -> ComposeOptions:
        return cls(
            max_import_depth=settings.max_import_depth,
            max_rules=settings.max_rules,
            globs=GlobLimits(
                max_chars=settings.glob_max_chars,
                max_wildcards=settings.glob_max_wildcards,
                max_segments=settings.glob_max_segments,
                max_alternatives=settings.glob_max_alternatives,
            ),
        )

    def key(self) -> str:
        """A canonical string of every option (cache keys)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


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
    problems: list[dict[str, Any]] = field(default_factory=list)

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
            "problems": self.problems,
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
            problems=m.get("problems", []),
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
    omitted: set[str] = field(default_factory=set)  # left out for the budget, counted in one summary line
    index_kept: int | None = None  # index entries that fit the budget (None: all)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, rule: Rule, kind: str, problem: str) -> None:
        """Leave a broken rule out and say why in the manifest's ``problems`` (``kind``: one of ``PROBLEM_KINDS``)."""
        self.selected.pop(rule.id, None)
        self.problems.append({"id": rule.id, "version": rule.version, "kind": kind, "problem": problem})


def _agent_allows(rule: Rule, agent: str | None) -> bool:
    """Rules tagged ``agent:<name>`` apply only to those agents; untagged rules apply to all."""
    wanted = [t[len(AGENT_TAG_PREFIX) :] for t in rule.tags if t.startswith(AGENT_TAG_PREFIX)]
    return not wanted or (agent is not None and agent in wanted)


def select(rules: Mapping[str, Rule], request: ComposeRequest, work: _Work,
           options: ComposeOptions = ComposeOptions()) -> None:
    """Step 1: pick the rules the request activates.

    - enabled ``always`` rules;
    - rules named in ``rule_ids`` (any activation; unknown ids are an error);
    - enabled ``auto`` rules whose globs match a context file and no exclude glob
      (a glob over the limits makes its rule a problem, not an error);
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
    files = [(f, encode_path(f)) for f in request.context_files]
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
            try:
                hit = next((f for f, data in files
                            if path_selects(data, rule.globs, rule.exclude_globs, options.globs)), None)
            except InvalidRule as exc:
                work.skip(rule, "invalid_glob", str(exc))
                continue
            if hit is not None:
                work.selected[rule.id] = Selection(rule, f"glob matched {hit}", pinned=False)
        else:
            work.index.append(rule)


class ImportGraph:
    """Which rules can be expanded, each rule's imports walked once per composition.

    Without this memo, a DAG of layers that each import the whole next layer is walked once
    per path, k^depth times. Here every edge is followed once: a rule's import height
    (the longest chain below it) and whether it is broken are computed when its last import
    is done, and reused by every rule that imports it.
    """

    def __init__(self, rules: Mapping[str, Rule], max_depth: int) -> None:
        self.rules = rules
        self.max_depth = max_depth
        self.imports: dict[str, list[Rule]] = {}  # enabled imports, in declared order
        self.disabled: dict[str, list[Rule]] = {}
        self.height: dict[str, int] = {}
        self.deepest: dict[str, str] = {}  # the import on the longest chain, for the depth error
        self.broken: dict[str, tuple[str, str]] = {}  # id -> (kind, problem)
        self._cause: dict[str, str] = {}  # the original problem a broken rule inherits

    def problem(self, rule: Rule) -> tuple[str, str] | None:
        """``(kind, why)`` ``rule`` cannot be composed (a missing import, a cycle, a chain too deep), or None."""
        if rule.id not in self.height and rule.id not in self.broken:
            self._walk(rule)
        if rule.id in self.broken:
            return self.broken[rule.id]
        if self.height[rule.id] > self.max_depth:
            chain = [rule.id]
            while len(chain) <= self.max_depth + 1:
                chain.append(self.deepest[chain[-1]])
            return "import_depth", (f"import chain {' -> '.join(chain)} is deeper than the limit of {self.max_depth}"
                                    " (max_import_depth)")
        return None

    def _resolve(self, rule: Rule) -> list[Rule]:
        enabled, disabled = [], []
        for imported_id in rule.imports:
            imported = self.rules.get(imported_id)
            if imported is None:
                missing = f"rule {rule.id!r} imports {imported_id!r}, which does not exist"
                self._break(rule.id, "missing_import", missing)
            elif imported.enabled:
                enabled.append(imported)
            else:
                disabled.append(imported)
        self.imports[rule.id], self.disabled[rule.id] = enabled, disabled
        return enabled

    def _break(self, rule_id: str, kind: str, problem: str, cause: str | None = None) -> None:
        if rule_id not in self.broken:
            self.broken[rule_id] = (kind, problem)
            self._cause[rule_id] = cause or problem

    def _walk(self, root: Rule) -> None:
        """Depth-first without recursion (a chain may be longer than Python's stack)."""
        path = [root.id]
        position = {root.id: 0}
        stack = [iter(self._resolve(root))]
        while stack:
            rule_id = path[-1]
            child = next(stack[-1], None)
            if child is not None:
                if child.id in position:
                    cycle = path[position[child.id] :]
                    problem = f"import cycle: {' -> '.join([*cycle, child.id])}"
                    for member in cycle:
                        self._break(member, "import_cycle", problem)
                elif child.id in self.broken:
                    self._inherit(rule_id, child.id)
                elif child.id not in self.height:
                    position[child.id] = len(path)
                    path.append(child.id)
                    stack.append(iter(self._resolve(child)))
                continue
            stack.pop()
            path.pop()
            del position[rule_id]
            if rule_id not in self.broken:
                self._measure(rule_id)
            if path and rule_id in self.broken:
                self._inherit(path[-1], rule_id)

    def _inherit(self, rule_id: str, imported_id: str) -> None:
        cause = self._cause[imported_id]
        self._break(rule_id, self.broken[imported_id][0],
                    f"rule {rule_id!r} imports {imported_id!r}, which cannot be composed: {cause}", cause)

    def _measure(self, rule_id: str) -> None:
        children = self.imports[rule_id]
        if not children:
            self.height[rule_id] = 0
            return
        deepest = max(children, key=lambda r: self.height[r.id])
        self.height[rule_id] = 1 + self.height[deepest.id]
        self.deepest[rule_id] = deepest.id


def import_problem(rules: Mapping[str, Rule], candidate: Rule, options: ComposeOptions) -> tuple[str, str] | None:
    """``(kind, why)`` ``candidate`` would be skipped by compose if stored beside ``rules`` (validation), or None."""
    return ImportGraph({**rules, candidate.id: candidate}, options.max_import_depth).problem(candidate)


def expand_imports(rules: Mapping[str, Rule], options: ComposeOptions, work: _Work) -> None:
    """Step 2: skip broken rules (``ImportGraph``), then add imported rules, depth-first, each once."""
    graph = ImportGraph(rules, options.max_import_depth)
    for selection in list(work.selected.values()):
        problem = graph.problem(selection.rule)
        if problem is not None:
            work.skip(selection.rule, *problem)
    expanded: set[str] = set()
    for root in list(work.selected.values()):
        if root.rule.id in expanded:
            continue
        expanded.add(root.rule.id)
        path = [root.rule]
        stack = [iter(graph.imports[root.rule.id])]
        for disabled in graph.disabled[root.rule.id]:
            work.dropped.append(
                {"id": disabled.id, "version": disabled.version, "reason": f"disabled (imported by {root.rule.id})"}
            )
        while stack:
            imported = next(stack[-1], None)
            if imported is None:
                stack.pop()
                path.pop()
                continue
            if imported.id not in work.selected:
                work.selected[imported.id] = Selection(imported, f"imported by {path[-1].id}", pinned=False)
            if imported.id not in expanded:
                expanded.add(imported.id)
                for disabled in graph.disabled[imported.id]:
                    work.dropped.append({"id": disabled.id, "version": disabled.version,
                                         "reason": f"disabled (imported by {imported.id})"})
                path.append(imported)
                stack.append(iter(graph.imports[imported.id]))
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


def _rule_part(rule: Rule, stub: bool) -> str:
    marker = f"<!-- rule:{rule.id}@{rule.version}{' stub' if stub else ''} -->"
    text = _stub(rule) if stub else rule.body.strip("\n")
    return f"{marker}\n{text}\n"


def _omitted_part(count: int) -> str:
    rules = "rule" if count == 1 else "rules"
    return f"<!-- rules:omitted -->\n{count} more matching {rules} left out for the token budget.\n"


def _index_line(entry: Mapping[str, str]) -> str:
    return f"- `{entry['id']}`: {entry['description'] or '(no description)'}"


def _index_part(entries: list[dict[str, str]], left_out: int) -> str:
    lines = [_index_line(e) for e in entries]
    if left_out:
        lines.append(f"- {left_out} more: see `list_rules`")
    return "<!-- rules:index -->\n## Rules available on request\n" + "\n".join(lines) + "\n"


def _cost(part: str) -> int:
    """Tokens a part adds to the document, its joining newline included.

    ``estimate_tokens`` is subadditive (a sum of rounded-up quarters plus line breaks), so the
    document never costs more than the sum of its parts' costs: what the budget step adds up.
    """
    return estimate_tokens(part + "\n")


def budget(token_budget: int | None, work: _Work) -> None:
    """Step 5: fit the whole rendered document within ``token_budget``.

    Pinned rules (``always`` and named) stay whole; if they alone cannot fit, ``LimitExceeded``
    names the smallest budget that does. Room is then held for one summary line of left-out
    rules and one of left-out index entries. Optional rules, strongest first, are kept whole
    while they fit, else as a one-line stub while that fits, else counted in the summary line.
    Index entries fill what is left, in id order.
    """
    if token_budget is None:
        return
    optional = sorted((s for s in work.ordered if not s.pinned), key=lambda s: _strength(s.rule))
    index = _index_entries(work)
    fixed = sum(_cost(_rule_part(s.rule, stub=False)) for s in work.ordered if s.pinned)
    if optional:
        fixed += _cost(_omitted_part(len(optional)))
    if index:
        fixed += _cost(_index_part([], len(index)))
    if fixed > token_budget:
        raise LimitExceeded(
            f"token_budget {token_budget} is too small: the rules that are always included whole (activation "
            f"'always' or named in rule_ids), with the document's summary lines, take {fixed} tokens; "
            f"the smallest budget that fits is {fixed}"
        )
    used = fixed
    for selection in optional:
        whole, stub = _cost(_rule_part(selection.rule, False)), _cost(_rule_part(selection.rule, True))
        if used + whole <= token_budget:
            used += whole
        elif used + stub <= token_budget:
            used += stub
            work.stubbed.add(selection.rule.id)
        else:
            work.omitted.add(selection.rule.id)
    kept = 0
    for entry in index:
        line = estimate_tokens(_index_line(entry) + "\n")
        if used + line > token_budget:
            break
        used += line
        kept += 1
    work.index_kept = kept


def _index_entries(work: _Work) -> list[dict[str, str]]:
    return [{"id": r.id, "description": r.description} for r in sorted(work.index, key=lambda r: r.id)]


def render(work: _Work, request: ComposeRequest) -> Composition:
    """Step 6: the markdown with provenance markers, and the manifest."""
    parts: list[str] = []
    included: list[dict[str, Any]] = []
    for selection in work.ordered:
        rule = selection.rule
        if rule.id in work.omitted:
            work.dropped.append({"id": rule.id, "version": rule.version, "reason": "omitted: over token budget"})
            continue
        stub = rule.id in work.stubbed
        parts.append(_rule_part(rule, stub))
        included.append(
            {
                "id": rule.id,
                "version": rule.version,
                "why": selection.why,
                "priority": rule.priority,
                "stubbed": stub,
                "tokens": estimate_tokens(_stub(rule) if stub else rule.body.strip("\n")),
            }
        )
        if stub:
            work.dropped.append({"id": rule.id, "version": rule.version, "reason": "stubbed: over token budget"})
    if work.omitted:
        parts.append(_omitted_part(len(work.omitted)))
    index = _index_entries(work)
    if index:
        kept = len(index) if work.index_kept is None else work.index_kept
        parts.append(_index_part(index[:kept], len(index) - kept))
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
        problems=sorted(work.problems, key=lambda p: (p["id"], p["problem"])),
    )


def compose(
    rules: Mapping[str, Rule] | Iterable[Rule],
    request: ComposeRequest,
    options: ComposeOptions = ComposeOptions(),
) -> Composition:
    """Compose ``rules`` (by id) for ``request``; raises ``CompositionError`` or ``LimitExceeded``."""
    by_id = rules if isinstance(rules, Mapping) else {r.id: r for r in rules}
    work = _Work()
    select(by_id, request, work, options)
    expand_imports(by_id, options, work)
    resolve(work)
    order(work)
    budget(request.token_budget, work)
    return render(work, request)


STEPS = ("select", "expand_imports", "resolve", "order", "budget", "render")
