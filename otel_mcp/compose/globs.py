"""Gitignore-style path matching for ``globs`` and ``exclude_globs``.

Semantics (the subset of gitignore that makes sense for rule activation):

- ``*`` matches within one path segment, ``?`` one character, ``[abc]`` a class;
- ``**`` matches any number of segments (``**/x``, ``a/**/b``, ``a/**``);
- a pattern without a ``/`` (other than a trailing one) matches the file name at any depth;
  a pattern with one is anchored at the project root (a leading ``/`` is allowed);
- a trailing ``/`` matches everything under that directory;
- ``{a,b}`` braces expand to alternatives (nested braces are supported).

Patterns are compiled once and cached, since the same few globs are matched
against every context file of every composition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from otel_mcp.errors import InvalidRule

MAX_PATTERN_CHARS = 512
MAX_BRACE_EXPANSIONS = 256


def expand_braces(pattern: str) -> list[str]:
    """``src/{a,b}/*.{ts,tsx}`` -> the four plain patterns, in order."""
    depth = 0
    start = -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : i]
                if "," not in _top_level(inner):
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for alt in split_top_level(inner):
                    out.extend(expand_braces(head + alt + tail))
                    if len(out) > MAX_BRACE_EXPANSIONS:
                        raise InvalidRule(f"glob {pattern!r} expands to more than {MAX_BRACE_EXPANSIONS} patterns")
                return out
    if depth:
        raise InvalidRule(f"glob {pattern!r} has an unclosed '{{'")
    return [pattern]


def _top_level(text: str) -> str:
    """The characters of ``text`` outside nested braces."""
    depth = 0
    kept = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            kept.append(ch)
    return "".join(kept)


def split_top_level(text: str) -> list[str]:
    """Split on commas outside braces: ``a,{b,c}`` -> ``a``, ``{b,c}``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        current.append(ch)
    parts.append("".join(current))
    return parts


def _translate(pattern: str) -> str:
    directory_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                at_segment_start = i == 0 or pattern[i - 1] == "/"
                at_segment_end = i + 2 == n or pattern[i + 2] == "/"
                if at_segment_start and at_segment_end:
                    if i + 2 == n:
                        out.append(".*")
                        i += 2
                    else:
                        out.append("(?:.*/)?")
                        i += 3
                    continue
                out.append("[^/]*")
                i += 2
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[^", i) else i + 1)
            if end == -1:
                raise InvalidRule(f"glob {pattern!r} has an unclosed '['")
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    regex = "".join(out)
    prefix = "" if anchored else "(?:.*/)?"
    suffix = "/.*" if directory_only else "(?:/.*)?"
    return f"{prefix}{regex}{suffix}"


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    alternatives = [_translate(p) for p in expand_braces(pattern)]
    try:
        return re.compile("^(?:" + "|".join(alternatives) + ")$", re.DOTALL)
    except re.error as exc:
        raise InvalidRule(f"glob {pattern!r} is malformed: {exc}") from None


def check_pattern(pattern: str) -> None:
    """Raise ``InvalidRule`` if ``pattern`` is not a usable glob."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidRule(f"glob is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}")
    if pattern.startswith("!"):
        raise InvalidRule(f"glob {pattern!r}: negation is not supported; put the pattern in exclude_globs")
    _compile(pattern)


def normalize_path(path: str) -> str:
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(_compile(p).match(path) for p in patterns)


def path_selects(path: str, globs: Iterable[str], exclude_globs: Iterable[str]) -> bool:
    """Whether ``path`` (already normalized) activates a rule with these globs."""
    return matches_any(path, globs) and not matches_any(path, exclude_globs)
