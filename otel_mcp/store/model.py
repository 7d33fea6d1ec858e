"""The rule model and its validation.

A rule is validated completely before any write starts, so a malformed
argument can never leave a half-written rule behind.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from otel_mcp.config import Settings
from otel_mcp.errors import InvalidRule

if TYPE_CHECKING:  # imported late at run time: otel_mcp.compose imports this module
    from otel_mcp.compose.globs import GlobLimits

RULE_ID_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
MAX_DESCRIPTION_CHARS = 1024
MAX_LIST_ITEMS = 64  # globs, exclude_globs, tags, overrides (imports: max_imports)
MAX_TAG_CHARS = 64  # (a glob's length is bounded by compose.globs.check_pattern, an id's by RULE_ID_PATTERN)


class Activation(StrEnum):
    """When a rule is part of a composition.

    ``always``: every composition. ``auto``: when a context file matches its
    globs. ``agent_requested``: listed by description; included only when named.
    ``manual``: only when named in ``rule_ids``.
    """

    ALWAYS = "always"
    AUTO = "auto"
    AGENT_REQUESTED = "agent_requested"
    MANUAL = "manual"


@dataclass(frozen=True)
class RuleSpec:
    """The caller-controlled part of a rule: what create/update write."""

    id: str
    body: str
    description: str = ""
    activation: Activation = Activation.MANUAL
    globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priority: int = 0
    imports: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def content_hash(self) -> str:
        """sha256 over body and metadata: the rule's etag (equal etags mean equal content)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "body": self.body,
            "description": self.description,
            "activation": self.activation.value,
            "globs": list(self.globs),
            "exclude_globs": list(self.exclude_globs),
            "tags": list(self.tags),
            "priority": self.priority,
            "imports": list(self.imports),
            "overrides": list(self.overrides),
            "settings": dict(self.settings),
            "enabled": self.enabled,
        }


SPEC_FIELDS = frozenset(f.name for f in fields(RuleSpec))


@dataclass(frozen=True)
class Rule(RuleSpec):
    """A stored rule: the spec plus what the store maintains."""

    version: int = 1
    etag: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def spec(self) -> RuleSpec:
        return RuleSpec(**{name: getattr(self, name) for name in SPEC_FIELDS})

    def to_dict(self, *, with_body: bool = True) -> dict[str, Any]:
        data = super().to_dict()
        if not with_body:
            del data["body"]
            data["body_bytes"] = len(self.body.encode())
        data.update(
            version=self.version, etag=self.etag, created_at=self.created_at, updated_at=self.updated_at
        )
        return data


def _default_glob_limits() -> GlobLimits:
    from otel_mcp.compose.globs import GlobLimits

    return GlobLimits()


@dataclass(frozen=True)
class RuleLimits:
    """The sizes a rule may have; ``max_read_bytes`` (``None``: unchecked) bounds the rule as it is read back."""

    max_body_bytes: int = Settings.max_body_bytes
    max_imports: int = Settings.max_imports
    max_settings_bytes: int = Settings.max_settings_bytes
    max_read_bytes: int | None = None
    globs: GlobLimits = field(default_factory=_default_glob_limits)


def _refuse_nul(name: str, value: Any) -> None:
    """NUL cuts C strings short in every tool downstream (files, terminals, SQLite's FTS): refuse it anywhere."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRule(f"{name} must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(f"{name} key", key)
            _refuse_nul(f"{name}[{key!r}]", item)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _refuse_nul(f"{name}[{i}]", item)


def read_bytes(spec: RuleSpec) -> int:
    """Bytes of ``spec`` as ``get_rule`` sends it: the body once as a JSON string, the other fields as
    JSON twice (structured content, and that JSON as a string in a text block; see otel_mcp.server.results)."""
    metadata = spec.to_dict()
    del metadata["body"]
    meta_json = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    return sum(len(json.dumps(text, ensure_ascii=False).encode()) for text in (spec.body, meta_json)) + len(
        meta_json.encode()
    )


def _string_list(name: str, value: Any, max_items: int = MAX_LIST_ITEMS, max_chars: int | None = None
                 ) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidRule(f"{name} must be a list of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise InvalidRule(f"{name} has {len(value)} items; at most {max_items} are allowed")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidRule(f"{name}[{i}] must be a non-empty string")
        if max_chars is not None and len(item) > max_chars:
            raise InvalidRule(f"{name}[{i}] has {len(item)} characters; at most {max_chars} are allowed")
        if item not in out:
            out.append(item)
    return tuple(out)


def check_rule_id(rule_id: Any, what: str = "id") -> str:
    if not isinstance(rule_id, str) or not RULE_ID_PATTERN.match(rule_id):
        raise InvalidRule(
            f"{what} {rule_id!r} is not a valid rule id: use 1-128 lowercase letters, digits, '.', '_' or '-',"
            " starting and ending with a letter or digit"
        )
    return rule_id


def build_spec(data: dict[str, Any], limits: RuleLimits = RuleLimits()) -> RuleSpec:
    """Validate untrusted field values and return a ``RuleSpec``; raise ``InvalidRule`` naming the field."""
    unknown = set(data) - SPEC_FIELDS
    if unknown:
        raise InvalidRule(f"unknown rule field(s): {', '.join(sorted(unknown))}")
    for name in sorted(data):
        _refuse_nul(name, data[name])
    rule_id = check_rule_id(data.get("id"))
    body = data.get("body")
    if not isinstance(body, str):
        raise InvalidRule("body must be a string")
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_body_bytes:
        raise InvalidRule(f"body is {size} bytes; the limit is {limits.max_body_bytes} bytes (max_body_bytes)")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidRule("description must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS or "\n" in description:
        raise InvalidRule(f"description must be one line of at most {MAX_DESCRIPTION_CHARS} characters")
    raw_activation = data.get("activation", Activation.MANUAL)
    try:
        activation = Activation(raw_activation)
    except ValueError:
        allowed = ", ".join(a.value for a in Activation)
        raise InvalidRule(f"activation {raw_activation!r} is not one of: {allowed}") from None
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -(10**6) <= priority <= 10**6:
        raise InvalidRule("priority must be an integer between -1000000 and 1000000")
    raw_imports = _string_list("imports", data.get("imports"), max(limits.max_imports, MAX_LIST_ITEMS))
    imports = tuple(check_rule_id(i, "import") for i in raw_imports)
    if len(imports) > limits.max_imports:
        raise InvalidRule(f"rule has {len(imports)} imports; the limit is {limits.max_imports} (max_imports)")
    if rule_id in imports:
        raise InvalidRule(f"rule {rule_id!r} imports itself")
    overrides = tuple(check_rule_id(i, "override") for i in _string_list("overrides", data.get("overrides")))
    settings = data.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise InvalidRule("settings must be an object with string keys")
    try:
        settings_bytes = len(json.dumps(settings, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidRule(f"settings must be JSON-serialisable: {exc}") from None
    if settings_bytes > limits.max_settings_bytes:
        raise InvalidRule(
            f"settings are {settings_bytes} bytes as JSON; the limit is {limits.max_settings_bytes} bytes"
            " (max_settings_bytes)"
        )
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidRule("enabled must be true or false")
    globs = _string_list("globs", data.get("globs"))
    exclude_globs = _string_list("exclude_globs", data.get("exclude_globs"))
    if activation is Activation.AUTO and not globs:
        raise InvalidRule("an 'auto' rule needs at least one glob")
    from otel_mcp.compose.globs import check_pattern

    for pattern in (*globs, *exclude_globs):
        check_pattern(pattern, limits.globs)
    spec = RuleSpec(
        id=rule_id,
        body=body,
        description=description,
        activation=activation,
        globs=globs,
        exclude_globs=exclude_globs,
        tags=_string_list("tags", data.get("tags"), max_chars=MAX_TAG_CHARS),
        priority=priority,
        imports=imports,
        overrides=overrides,
        settings=dict(settings),
        enabled=enabled,
    )
    if limits.max_read_bytes is not None and (size := read_bytes(spec)) > limits.max_read_bytes:
        raise InvalidRule(
            f"rule {rule_id!r} would be {size} bytes when read back; the limit is {limits.max_read_bytes} bytes"
            " (max_result_bytes less room for the reply's envelope): shorten the body or the settings"
        )
    return spec


def merge_spec(current: RuleSpec, changes: dict[str, Any], limits: RuleLimits = RuleLimits()) -> RuleSpec:
    """Apply a partial update to ``current`` and validate the result as a whole."""
    if "id" in changes and changes["id"] != current.id:
        raise InvalidRule("a rule's id cannot be changed; create a new rule instead")
    merged = current.to_dict()
    merged.update({k: v for k, v in changes.items() if v is not None})
    return build_spec(merged, limits)


__all__ = [
    "Activation",
    "Rule",
    "RuleLimits",
    "RuleSpec",
    "build_spec",
    "check_rule_id",
    "merge_spec",
    "read_bytes",
]
