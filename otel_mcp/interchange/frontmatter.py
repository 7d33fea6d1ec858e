"""Front matter as rule tools write it.

Cursor writes ``globs: **/*`` unquoted, which strict YAML rejects (``*`` starts
an alias), so we read strict YAML first and fall back to a line-based
``key: value`` reading that accepts what these tools emit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from otel_mcp.errors import InvalidRule

_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")
# libyaml's safe loader and dumper when PyYAML was built with it: the same YAML, several times faster.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def split(text: str) -> tuple[dict[str, Any], str]:
    """Return (front matter, body). A file without front matter has an empty dict."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith("---"):
        return {}, text
    lines = text.splitlines(keepends=True)
    if lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            raw = "".join(lines[1:end])
            return parse(raw), "".join(lines[end + 1 :])
    raise InvalidRule("front matter starts with '---' but is never closed")


def parse(raw: str) -> dict[str, Any]:
    try:
        data = yaml.load(raw, Loader=_Loader) if raw.strip() else {}
    except yaml.YAMLError:
        return _parse_lines(raw)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidRule("front matter must be a mapping of keys to values")
    return {str(k): v for k, v in data.items()}


def _parse_lines(raw: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for number, line in enumerate(raw.splitlines(), start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise InvalidRule(f"front matter line {number} is not 'key: value': {line.strip()[:80]!r}")
        key, value = match.group(1), match.group(2).strip()
        data[key] = _scalar(value)
    return data


def _scalar(value: str) -> Any:
    if value in ("", "~", "null"):
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value[0] in "[{\"":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value


def render(data: dict[str, Any], body: str) -> str:
    """Front matter (strict YAML, so every tool can read it back) followed by the body."""
    head = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None, width=1000)
    return f"---\n{head}---\n{body}"
