"""Gitignore-style path matching for ``globs`` and ``exclude_globs``, in time linear in the path.

Semantics (the subset of gitignore that makes sense for rule activation):

- ``*`` matches within one path segment, ``?`` one character, ``[abc]`` a class
  (``[!abc]`` or ``[^abc]`` negated); neither a class nor ``?`` ever matches ``/``;
- ``**`` matches any number of segments (``**/x``, ``a/**/b``, ``a/**``);
- a pattern without a ``/`` (other than a trailing one) matches the file name at any depth;
  a pattern with one is anchored at the project root (a leading ``/`` is allowed);
- a trailing ``/`` matches everything under that directory;
- ``{a,b}`` braces expand to alternatives (nested braces are supported);
- ``\\`` escapes the next character: ``\\*`` is a literal ``*``, ``\\{`` a literal ``{``.

Why RE2 (``google-re2``, Google's own bindings): a glob is translated to a regular
expression, and Python's ``re`` backtracks, so a hostile glob such as ``*a*a*a*a*a*a*b``
took seconds on an 80-character path while holding the GIL. RE2 runs an automaton
(a lazily built DFA, with an NFA simulation as its fallback) and guarantees time linear in
the path for a compiled pattern and proportional to the pattern's size, with no backtracking;
``perf/glob_bench.py`` measures both slopes. The limits (``GlobLimits``, settings
``glob_max_*``) bound the pattern's size, so a worst-case match stays in microseconds.
The same engine serves composition, ``validate_rule`` and import, through ``check_pattern``.

Each written pattern is compiled once (cached) to one RE2 program of its brace alternatives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import re2
from re2 import _re2

from otel_mcp.config import default_setting
from otel_mcp.errors import InvalidRule

# The public ``re2.Pattern.fullmatch`` builds a match object and maps byte offsets back to
# characters in Python, six times the cost of the match itself; a yes/no answer needs neither,
# so we call the bound RE2 object directly (google-re2 is pinned in pyproject.toml).
_FULL = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # no groups to report: the cheapest automaton
_OPTIONS.dot_nl = True  # a path is data: `**` crosses any character, newline included
_OPTIONS.log_errors = False  # a pattern RE2 refuses is reported to the caller, not to stderr
_WILDCARDS = "*?["


@dataclass(frozen=True)
class GlobLimits:
    """Pattern size limits; each error names its setting.

    :param int max_chars: characters in one written pattern (default ``glob_max_chars``)
    :param int max_wildcards: ``*``/``**``, ``?`` and ``[...]`` over all brace alternatives
        (default ``glob_max_wildcards``)
    :param int max_segments: ``/``-separated segments in one alternative (default ``glob_max_segments``)
    :param int max_alternatives: patterns a brace expression expands to (default ``glob_max_alternatives``)
    """

    max_chars: int = default_setting("glob_max_chars")
    max_wildcards: int = default_setting("glob_max_wildcards")
    max_segments: int = default_setting("glob_max_segments")
    max_alternatives: int = default_setting("glob_max_alternatives")


def _scan(pattern: str) -> Iterable[tuple[int, str, bool]]:
    """``(index, character, escaped)`` for each character of ``pattern``, backslash escapes resolved."""
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\":
            if i + 1 == n:
                raise InvalidRule(f"glob {pattern!r} ends with an unfinished escape '\\'")
            yield i, pattern[i + 1], True
            i += 2
        else:
            yield i, pattern[i], False
            i += 1


def expand_braces(pattern: str, max_alternatives: int = GlobLimits.max_alternatives) -> list[str]:
    """``src/{a,b}/*.{ts,tsx}`` -> the four plain patterns, in order (escaped braces stay literal)."""
    depth = 0
    start = -1
    for i, ch, escaped in _scan(pattern):
        if escaped:
            continue
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : i]
                alternatives = split_top_level(inner)
                if len(alternatives) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for alt in alternatives:
                    out.extend(expand_braces(head + alt + tail, max_alternatives))
                    if len(out) > max_alternatives:
                        raise InvalidRule(
                            f"glob {pattern!r} expands to more than {max_alternatives} patterns"
                            " (glob_max_alternatives)"
                        )
                return out
    if depth:
        raise InvalidRule(f"glob {pattern!r} has an unclosed '{{'")
    return [pattern]


def split_top_level(text: str) -> list[str]:
    """Split on commas outside braces and not escaped: ``a,{b,c},d`` -> ``a``, ``{b,c}``, ``d``."""
    parts: list[str] = []
    start = 0
    depth = 0
    for i, ch, escaped in _scan(text):
        if escaped:
            continue
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
    parts.append(text[start:])
    return parts


def _literal(ch: str) -> str:
    return ch if ch.isalnum() and ch.isascii() else f"\\x{{{ord(ch):x}}}"


def _class(pattern: str, chars: list[tuple[int, str, bool]], start: int) -> tuple[str, int]:
    """The RE2 class for the ``[...]`` opening at ``chars[start]``, and the index after it; never matches ``/``."""
    i = start + 1
    negated = i < len(chars) and chars[i][1] in "!^" and not chars[i][2]
    i += negated
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(chars):
        _, ch, escaped = chars[i]
        if ch == "]" and not escaped and not first:
            break
        first = False
        if i + 2 < len(chars) and chars[i + 1][1] == "-" and not chars[i + 1][2] and chars[i + 2][1:] != ("]", False):
            low, high = ord(ch), ord(chars[i + 2][1])
            if low > high:
                raise InvalidRule(f"glob {pattern!r} has a reversed range {ch}-{chars[i + 2][1]}")
            ranges.append((low, high))
            i += 3
        else:
            ranges.append((ord(ch), ord(ch)))
            i += 1
    else:
        raise InvalidRule(f"glob {pattern!r} has an unclosed '['")
    slash = ord("/")
    if negated:
        ranges.append((slash, slash))
    else:  # cut '/' out of every range that holds it
        ranges = [part for lo, hi in ranges for part in ((lo, min(hi, slash - 1)), (max(lo, slash + 1), hi))
                  if part[0] <= part[1]]
    body = "".join(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges)
    if not body:  # e.g. ``[/]``: a class that can match nothing
        return "[^\\x00-\\x{10ffff}]", i + 1
    return f"[{'^' if negated else ''}{body}]", i + 1


def _translate(pattern: str, limits: GlobLimits) -> tuple[str, int]:
    """One brace-free pattern as an RE2 expression for the whole path, and its number of wildcards."""
    directory_only = pattern.endswith("/") and not pattern.endswith("\\/")
    pattern = pattern.rstrip("/") if directory_only else pattern
    chars = list(_scan(pattern))
    segments = 1 + sum(1 for _, ch, _ in chars if ch == "/")
    if segments > limits.max_segments:
        raise InvalidRule(
            f"glob {pattern!r} has {segments} segments; the limit is {limits.max_segments} (glob_max_segments)"
        )
    anchored = any(ch == "/" for _, ch, _ in chars)
    while chars and chars[0][1] == "/":
        chars.pop(0)
    out: list[str] = []
    wildcards = 0
    i, n = 0, len(chars)
    while i < n:
        _, ch, escaped = chars[i]
        if escaped or ch not in _WILDCARDS:
            out.append(_literal(ch))
            i += 1
            continue
        wildcards += 1
        if ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            expression, i = _class(pattern, chars, i)
            out.append(expression)
        else:
            run = i
            while i < n and chars[i][1] == "*" and not chars[i][2]:
                i += 1
            whole_segment = (run == 0 or chars[run - 1][1] == "/") and (i == n or chars[i][1] == "/")
            if i - run >= 2 and whole_segment:
                if i == n:
                    out.append(".*")
                else:
                    out.append("(?:.*/)?")
                    i += 1  # the '/' after '**' is part of the optional group
            else:
                out.append("[^/]*")
    prefix = "" if anchored else "(?:.*/)?"
    suffix = "/.*" if directory_only else "(?:/.*)?"
    return f"{prefix}{''.join(out)}{suffix}", wildcards


@lru_cache(maxsize=4096)
def _compile(pattern: str, limits: GlobLimits) -> _re2.RE2:
    if len(pattern) > limits.max_chars:
        raise InvalidRule(f"glob is {len(pattern)} characters; the limit is {limits.max_chars} (glob_max_chars)")
    if pattern.startswith("!"):
        raise InvalidRule(f"glob {pattern!r}: negation is not supported; put the pattern in exclude_globs")
    translated = [_translate(p, limits) for p in expand_braces(pattern, limits.max_alternatives)]
    wildcards = sum(count for _, count in translated)
    if wildcards > limits.max_wildcards:
        raise InvalidRule(
            f"glob {pattern!r} has {wildcards} wildcards (counting every brace alternative); the limit is "
            f"{limits.max_wildcards} (glob_max_wildcards)"
        )
    program = _re2.RE2("|".join(expression for expression, _ in translated).encode(), _OPTIONS)
    if not program.ok():
        raise InvalidRule(f"glob {pattern!r} is malformed: {program.error()}")
    return program


def check_pattern(pattern: str, limits: GlobLimits = GlobLimits()) -> None:
    """Raise ``InvalidRule`` (naming the limit's setting) if ``pattern`` is not a usable glob."""
    _compile(pattern, limits)


def normalize_path(path: str) -> str:
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


@lru_cache(maxsize=4096)
def _programs(patterns: tuple[str, ...], limits: GlobLimits) -> tuple[_re2.RE2, ...]:
    return tuple(_compile(p, limits) for p in patterns)


def encode_path(path: str) -> bytes:
    """``path`` as RE2 reads it; encode a context file once, then match it against every rule."""
    return path.encode("utf-8", "surrogatepass")


def _any_match(data: bytes, patterns: tuple[str, ...], limits: GlobLimits) -> bool:
    end = len(data)
    return any(program.Match(_FULL, data, 0, end)[0] != _NO_MATCH for program in _programs(patterns, limits))


def matches_any(path: str, patterns: Iterable[str], limits: GlobLimits = GlobLimits()) -> bool:
    """Whether ``path`` (normalized) matches one of ``patterns``; ``InvalidRule`` for a bad pattern."""
    return _any_match(encode_path(path), tuple(patterns), limits)


def path_selects(
    path: str | bytes, globs: Iterable[str], exclude_globs: Iterable[str], limits: GlobLimits = GlobLimits()
) -> bool:
    """Whether ``path`` (already normalized, or ``encode_path``'s bytes) activates a rule with these globs."""
    data = encode_path(path) if isinstance(path, str) else path
    excludes = tuple(exclude_globs)  # a rule's are a tuple already: no copy
    return _any_match(data, tuple(globs), limits) and not (excludes and _any_match(data, excludes, limits))
