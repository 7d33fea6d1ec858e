"""Mapping between rule files of the common agent tools and our rule model.

=========== ============================== ==========================================
format      files                          activation
=========== ============================== ==========================================
cursor      ``*.mdc``                      ``alwaysApply`` -> always; ``globs`` -> auto;
                                           ``description`` -> agent_requested; else manual
claude      ``.claude/rules/*.md``         ``paths`` -> auto; else always
copilot     ``*.instructions.md``          ``applyTo`` -> auto (``**`` -> always)
agents      ``AGENTS.md`` / ``CLAUDE.md``  always at the root; ``dir/AGENTS.md`` -> auto on ``dir/**``
=========== ============================== ==========================================

Our own fields (``id``, ``priority``, ``tags``, ``imports``, ``overrides``,
``settings``, ``exclude_globs``, ``activation``, ``enabled``) are read from and
written to the front matter too, so an export imports back unchanged.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from otel_mcp.compose.globs import split_top_level
from otel_mcp.errors import InvalidRule
from otel_mcp.interchange import frontmatter
from otel_mcp.store.model import Activation, Rule

FORMATS = ("cursor", "claude", "copilot", "agents")
OWN_FIELDS = ("id", "activation", "priority", "tags", "imports", "overrides", "settings", "exclude_globs", "enabled")
AGENT_FILES = ("AGENTS.md", "CLAUDE.md")


def detect_format(relative: PurePosixPath) -> str | None:
    name = relative.name
    if name.endswith(".mdc"):
        return "cursor"
    if name.endswith(".instructions.md"):
        return "copilot"
    if name in AGENT_FILES:
        return "agents"
    if name.endswith(".md") and ".claude/rules" in relative.as_posix():
        return "claude"
    return None


def slug(text: str) -> str:
    value = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return value[:128].rstrip("-._") or "rule"


def _globs(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [g.strip() for g in split_top_level(value) if g.strip()]
    if isinstance(value, list) and all(isinstance(g, str) for g in value):
        return [g.strip() for g in value if g.strip()]
    raise InvalidRule(f"globs must be a string or a list of strings, got {type(value).__name__}")


def to_fields(relative: PurePosixPath, text: str, fmt: str) -> dict[str, Any]:
    """The rule fields for one file's text (validated later by the store)."""
    meta, body = frontmatter.split(text)
    description = meta.get("description") or ""
    if not isinstance(description, str):
        raise InvalidRule("description must be a string")
    # Files written by export_rules carry our own ``id``: keep their text verbatim so that an
    # export imports back with identical etags. Other files are tidied (newlines, blank edges).
    if "id" not in meta:
        body = body.replace("\r\n", "\n").replace("\r", "\n").strip("\n") + "\n"
        description = " ".join(description.split())
    fields: dict[str, Any] = {"body": body, "description": description}
    if fmt == "cursor":
        globs = _globs(meta.get("globs"))
        always = meta.get("alwaysApply") is True
        fields["id"] = slug(relative.name.removesuffix(".mdc"))
        fields["globs"] = globs
        fields["activation"] = (
            Activation.ALWAYS if always else Activation.AUTO if globs
            else Activation.AGENT_REQUESTED if description else Activation.MANUAL
        ).value
    elif fmt == "claude":
        globs = _globs(meta.get("paths"))
        fields["id"] = slug(relative.name.removesuffix(".md"))
        fields["globs"] = globs
        fields["activation"] = (Activation.AUTO if globs else Activation.ALWAYS).value
    elif fmt == "copilot":
        globs = _globs(meta.get("applyTo"))
        fields["id"] = slug(relative.name.removesuffix(".instructions.md"))
        everything = globs in ([], ["**"], ["**/*"])
        fields["globs"] = [] if everything else globs
        fields["activation"] = (Activation.ALWAYS if everything else Activation.AUTO).value
    elif fmt == "agents":
        parent = relative.parent.as_posix()
        stem = relative.name.removesuffix(".md")
        fields["id"] = slug(stem if parent == "." else f"{stem}-{parent}")
        fields["globs"] = [] if parent == "." else [f"{parent}/**"]
        fields["activation"] = (Activation.ALWAYS if parent == "." else Activation.AUTO).value
    else:
        raise InvalidRule(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    for key in OWN_FIELDS:
        if key in meta:
            fields[key] = meta[key]
    return fields


def file_name(rule: Rule, fmt: str) -> str:
    return {
        "cursor": f"{rule.id}.mdc",
        "claude": f".claude/rules/{rule.id}.md",
        "copilot": f".github/instructions/{rule.id}.instructions.md",
    }[fmt]


def to_text(rule: Rule, fmt: str) -> str:
    meta: dict[str, Any] = {"description": rule.description}
    if fmt == "cursor":
        meta["globs"] = ", ".join(rule.globs)
        meta["alwaysApply"] = rule.activation is Activation.ALWAYS
    elif fmt == "claude" and rule.globs:
        meta["paths"] = list(rule.globs)
    elif fmt == "copilot":
        meta["applyTo"] = ",".join(rule.globs) if rule.globs else "**"
    own = rule.to_dict()
    for key in OWN_FIELDS:
        meta[key] = own[key]
    return frontmatter.render(meta, rule.body)
