"""Mapping between rule files of the common agent tools and our rule model.

=========== ============================== ==========================================
format      files                          activation of a file the tool wrote
=========== ============================== ==========================================
cursor      ``*.mdc``                      ``alwaysApply`` -> always; ``globs`` -> auto;
                                           ``description`` -> agent_requested; else manual
claude      ``.claude/rules/*.md``         ``paths`` -> auto; else always
copilot     ``*.instructions.md``          ``applyTo`` -> auto (``**`` -> always);
                                           none -> agent_requested with a description, else manual
agents      ``AGENTS.md`` / ``CLAUDE.md``  always at the root; ``dir/AGENTS.md`` -> auto on ``dir/**``
=========== ============================== ==========================================

A file that ``export_rules`` wrote carries every rule field, so it imports back
unchanged: what the tool's own keys cannot say is written as our own
front-matter keys (``id``, ``activation``, ``priority``, ``tags``, ... and
``globs`` where the tool's glob key cannot hold them exactly), and an AGENTS.md
holds one ``<!-- otel-mcp:rule {...} -->`` marker per rule. docs/architecture.md
has the table of what each format carries.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any

from otel_mcp.compose.globs import split_top_level
from otel_mcp.errors import InvalidRule
from otel_mcp.interchange import frontmatter
from otel_mcp.store.model import Activation, Rule, RuleSpec

FORMATS = ("cursor", "claude", "copilot", "agents")
OWN_FIELDS = ("id", "activation", "priority", "tags", "imports", "overrides", "settings", "exclude_globs", "enabled")
AGENT_FILES = ("AGENTS.md", "CLAUDE.md")
AGENTS_FILE = AGENT_FILES[0]  # what export writes
EVERY_FILE = frozenset({"**", "**/*"})  # Copilot's applyTo for "all files"
# One line per rule in an exported AGENTS.md; the JSON never holds '>' (written as \u003e), so '-->' ends it.
MARKER = re.compile(r"^<!-- otel-mcp:rule (\{[^\n]*\}) -->[ \t]*\r?(?:\n|\Z)", re.MULTILINE)


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
        return [g for g in value if g.strip()]
    raise InvalidRule(f"globs must be a string or a list of strings, got {type(value).__name__}")


def _native(relative: PurePosixPath, meta: dict[str, Any], fmt: str, description: str) -> dict[str, Any]:
    """id, globs and activation as the tool itself reads the file."""
    if fmt == "cursor":
        globs = _globs(meta.get("globs"))
        activation = (
            Activation.ALWAYS if meta.get("alwaysApply") is True else Activation.AUTO if globs
            else Activation.AGENT_REQUESTED if description else Activation.MANUAL
        )
        stem = relative.name.removesuffix(".mdc")
    elif fmt == "claude":
        globs = _globs(meta.get("paths"))
        activation = Activation.AUTO if globs else Activation.ALWAYS
        stem = relative.name.removesuffix(".md")
    elif fmt == "copilot":
        globs = _globs(meta.get("applyTo"))
        stem = relative.name.removesuffix(".instructions.md")
        if not globs:  # VS Code applies a file without applyTo only when it is attached (or picked by description)
            activation = Activation.AGENT_REQUESTED if description else Activation.MANUAL
        elif EVERY_FILE.intersection(globs):
            globs, activation = [], Activation.ALWAYS
        else:
            activation = Activation.AUTO
    elif fmt == "agents":
        parent = relative.parent.as_posix()
        stem = relative.name.removesuffix(".md")
        stem = stem if parent == "." else f"{stem}-{parent}"
        globs = [] if parent == "." else [f"{parent}/**"]
        activation = Activation.ALWAYS if parent == "." else Activation.AUTO
    else:
        raise InvalidRule(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return {"id": slug(stem), "globs": globs, "activation": activation.value}


def to_fields(relative: PurePosixPath, text: str, fmt: str) -> dict[str, Any]:
    """The rule fields for one rule file's text (validated later by the store)."""
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
    fields.update(_native(relative, meta, fmt, description))
    own = OWN_FIELDS if fmt == "cursor" else (*OWN_FIELDS, "globs")  # Cursor's own key is ``globs``
    fields.update({key: meta[key] for key in own if key in meta})
    return fields


def to_rules(relative: PurePosixPath, text: str, fmt: str) -> list[dict[str, Any]]:
    """The rules in one file: one, or one per marker in an AGENTS.md that ``export_rules`` wrote."""
    marker = MARKER.search(text) if fmt == "agents" else None
    if marker is None:
        return [to_fields(relative, text, fmt)]
    preamble = text[: marker.start()]
    rules = [to_fields(relative, preamble, fmt)] if preamble.strip() else []
    while marker is not None:
        fields = _marker_fields(text, marker)
        lines = fields.pop("lines", None)
        if isinstance(lines, int):
            end = _after_lines(text, marker.end(), lines)
            following = MARKER.search(text, end)
        else:
            following = MARKER.search(text, marker.end())
            end = len(text) if following is None else following.start()
        fields["body"] = text[marker.end() : end].removesuffix("\n")  # the line break export adds after each body
        rules.append(fields)
        marker = following
    return rules


def _marker_fields(text: str, marker: re.Match[str]) -> dict[str, Any]:
    try:
        fields = json.loads(marker.group(1))
    except json.JSONDecodeError as exc:
        raise InvalidRule(f"rule marker on line {_line(text, marker)} is not valid JSON: {exc.msg}") from None
    if not isinstance(fields, dict) or "body" in fields:
        raise InvalidRule(f"rule marker on line {_line(text, marker)} must be a JSON object of rule fields, no 'body'")
    return fields


def _after_lines(text: str, start: int, lines: int) -> int:
    """The offset after ``lines`` line breaks from ``start`` (or the end of ``text``)."""
    end = start
    for _ in range(lines):
        found = text.find("\n", end)
        if found < 0:
            return len(text)
        end = found + 1
    return end


def _line(text: str, match: re.Match[str]) -> int:
    return text.count("\n", 0, match.start()) + 1


def file_name(rule: Rule, fmt: str) -> str:
    return {
        "cursor": f"{rule.id}.mdc",
        "claude": f".claude/rules/{rule.id}.md",
        "copilot": f".github/instructions/{rule.id}.instructions.md",
    }[fmt]


def to_text(rule: Rule, fmt: str) -> str:
    """One rule as a file of ``fmt`` (not agents: see ``agents_text``) that ``to_fields`` reads back equal."""
    meta: dict[str, Any] = {"description": rule.description}
    globs = list(rule.globs)
    if fmt == "cursor":
        joined = ", ".join(globs)
        meta["globs"] = joined if _globs(joined) == globs else globs
        meta["alwaysApply"] = rule.activation is Activation.ALWAYS
    elif fmt == "claude" and globs:
        meta["paths"] = globs
    elif fmt == "copilot" and (globs or rule.activation is Activation.ALWAYS):
        meta["applyTo"] = ",".join(globs) or "**"
    own = rule.to_dict()
    meta.update({key: own[key] for key in OWN_FIELDS})
    if _native(PurePosixPath(file_name(rule, fmt)), meta, fmt, rule.description)["globs"] != globs:
        meta["globs"] = globs  # the tool's own key cannot say them exactly (e.g. Copilot's '**/*')
    return frontmatter.render(meta, rule.body)


def agents_text(rules: list[Rule]) -> str:
    """One AGENTS.md for the enabled rules: each body after a marker with its other fields."""
    return "".join(f"{_marker(rule)}\n{rule.body}\n" for rule in rules if rule.enabled)


def _marker(rule: Rule) -> str:
    defaults = RuleSpec(id=rule.id, body="").to_dict()
    fields = {k: v for k, v in rule.spec.to_dict().items() if k != "body" and (k == "id" or v != defaults[k])}
    if MARKER.search(rule.body):  # a body that quotes a marker line is delimited by its length instead
        fields["lines"] = rule.body.count("\n") + 1
    data = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).replace(">", "\\u003e")
    return f"<!-- otel-mcp:rule {data} -->"
