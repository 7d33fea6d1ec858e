"""Gitignore-style glob matching with braces: the activation rules for ``auto`` rules."""

from __future__ import annotations

import time

import pytest

from otel_mcp.compose.globs import (
    GlobLimits,
    check_pattern,
    expand_braces,
    matches_any,
    normalize_path,
    path_selects,
    split_top_level,
)
from otel_mcp.errors import InvalidRule

CASES: list[tuple[str, str, bool]] = [
    # basename patterns (no slash) match at any depth
    ("*.py", "a.py", True),
    ("*.py", "src/pkg/a.py", True),
    ("*.py", "a.pyc", False),
    ("*.py", "src/a.py.txt", False),
    ("Makefile", "Makefile", True),
    ("Makefile", "sub/dir/Makefile", True),
    ("Makefile", "Makefile.am", False),
    ("test_?.py", "tests/test_a.py", True),
    ("test_?.py", "tests/test_ab.py", False),
    ("test_?.py", "test_/.py", False),
    # a basename pattern naming a directory also matches everything below it (gitignore)
    ("node_modules", "web/node_modules/x/y.js", True),
    # patterns with a slash are anchored at the root
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/sub/a.py", False),
    ("src/*.py", "lib/src/a.py", False),
    ("/src/*.py", "src/a.py", True),
    ("/src/*.py", "lib/src/a.py", False),
    ("/README.md", "README.md", True),
    ("/README.md", "docs/README.md", False),
    # * never crosses a slash
    ("src/*", "src/a.py", True),
    ("src/*", "src/sub/a.py", True),  # matches directory 'sub' and so everything under it
    ("a/*.js", "a/b/c.js", False),
    # ** spans segments
    ("**/*.py", "a.py", True),
    ("**/*.py", "x/y/z/a.py", True),
    ("**/test_*.py", "test_a.py", True),
    ("**/test_*.py", "pkg/tests/test_a.py", True),
    ("src/**", "src/a.py", True),
    ("src/**", "src/a/b/c.py", True),
    ("src/**", "srcx/a.py", False),
    ("src/**", "lib/src/a.py", False),
    ("src/**/*.ts", "src/a.ts", True),
    ("src/**/*.ts", "src/x/y/a.ts", True),
    ("src/**/*.ts", "src/x/y/a.js", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("**", "anything/at/all.txt", True),
    ("foo**bar", "fooXbar", True),  # ** inside a segment acts like *
    ("foo**bar", "foo/bar", False),
    # trailing slash: a directory and everything under it
    ("docs/", "docs/a.md", True),
    ("docs/", "site/docs/a.md", True),
    ("docs/", "docs", False),
    ("docs/", "docsx/a.md", False),
    ("/build/", "build/out/x.o", True),
    ("/build/", "src/build/x.o", False),
    ("src/gen/", "src/gen/a.py", True),
    ("src/gen/", "x/src/gen/a.py", False),
    # character classes
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[!abc].txt", "d.txt", True),
    ("[!abc].txt", "a.txt", False),
    ("[a-c]*.md", "beta.md", True),
    ("file[0-9].log", "logs/file7.log", True),
    # braces
    ("*.{ts,tsx}", "app/a.ts", True),
    ("*.{ts,tsx}", "app/a.tsx", True),
    ("*.{ts,tsx}", "app/a.js", False),
    ("src/{a,b}/*.py", "src/a/x.py", True),
    ("src/{a,b}/*.py", "src/b/x.py", True),
    ("src/{a,b}/*.py", "src/c/x.py", False),
    ("{src/*.py,*.md}", "src/a.py", True),  # each alternative keeps its own anchoring
    ("{src/*.py,*.md}", "deep/doc.md", True),
    ("{src/*.py,*.md}", "lib/src/a.py", False),
    ("*.{j{s,sx},ts}", "a.jsx", True),
    ("*.{j{s,sx},ts}", "a.js", True),
    ("*.{j{s,sx},ts}", "a.j", False),
    ("{a}.txt", "{a}.txt", True),  # no comma: the braces are literal
    ("{a}.txt", "a.txt", False),
    ("*.{,md}", "x.md", True),  # an empty alternative
    # special characters are literal
    ("a+b(c).py", "a+b(c).py", True),
    ("a.b", "aXb", False),
    ("$x^", "$x^", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASES)
def test_pattern_semantics(pattern: str, path: str, expected: bool) -> None:
    check_pattern(pattern)
    assert matches_any(path, [pattern]) is expected


def test_expand_braces() -> None:
    assert expand_braces("src/{a,b}/*.{ts,tsx}") == ["src/a/*.ts", "src/a/*.tsx", "src/b/*.ts", "src/b/*.tsx"]
    assert expand_braces("{a,{b,c}}") == ["a", "b", "c"]
    assert expand_braces("plain") == ["plain"]
    assert expand_braces("{x}") == ["{x}"]
    assert split_top_level("a,{b,c},d") == ["a", "{b,c}", "d"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("src/{a,b", "unclosed '{'"),
        ("[abc", "unclosed '\\['"),
        ("[!", "unclosed '\\['"),
        ("[]", "unclosed"),
        ("!*.py", "negation is not supported; put the pattern in exclude_globs"),
        ("x" * 513, "glob is 513 characters; the limit is 512"),
        ("{a,b}" * 9, f"expands to more than {GlobLimits.max_alternatives} patterns"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        check_pattern(pattern)


def test_brace_limit_is_inclusive() -> None:
    check_pattern("{a,b}" * 8)  # exactly 256 alternatives


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("./src/a.py", "src/a.py"), ("././a", "a"), ("/abs/p.py", "abs/p.py"), ("src\\win\\a.py", "src/win/a.py"),
     ("plain.py", "plain.py")],
)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


def test_exclude_globs_win() -> None:
    globs, excludes = ["**/*.py"], ["tests/**", "*_pb2.py"]
    assert path_selects("src/app.py", globs, excludes)
    assert not path_selects("tests/test_app.py", globs, excludes)
    assert not path_selects("src/gen/msg_pb2.py", globs, excludes)
    assert not path_selects("src/app.ts", globs, excludes)
    assert path_selects("src/app.py", globs, [])
    assert not path_selects("src/app.py", [], [])


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("\\*.py", "*.py", True),  # an escaped star is a literal star
        ("\\*.py", "a.py", False),
        ("a\\?", "a?", True),
        ("a\\?", "ab", False),
        ("\\[x]", "[x]", True),
        ("\\{a,b}", "{a,b}", True),  # escaped braces do not expand
        ("\\{a,b}", "a", False),
        ("{a\\,b,c}", "a,b", True),
        ("{a\\,b,c}", "c", True),
        ("a[/]b", "a/b", False),  # a class never matches '/'
        ("a[!x]b", "a/b", False),
        ("a[^x]b", "a/b", False),
        ("a[!x]b", "a-b", True),
        ("a[.-0]b", "a/b", False),  # nor does a range spanning '/'
        ("a[.-0]b", "a0b", True),
        ("a[.-0]b", "a.b", True),
        ("[]x]", "]", True),  # ']' first in a class is a member
        ("[!]]", "a", True),
        ("é?.md", "éx.md", True),  # '?' is one character, not one byte
    ],
)
def test_escapes_and_classes(pattern: str, path: str, expected: bool) -> None:
    check_pattern(pattern)
    assert matches_any(path, [pattern]) is expected


@pytest.mark.parametrize(
    ("pattern", "limits", "message"),
    [
        ("*a*/x", GlobLimits(max_wildcards=1), "has 2 wildcards .* the limit is 1 \\(glob_max_wildcards\\)"),
        ("*.{a,b,c}", GlobLimits(max_wildcards=2), "has 3 wildcards"),
        ("a/b/c/d", GlobLimits(max_segments=3), "has 4 segments; the limit is 3 \\(glob_max_segments\\)"),
        ("abcdef", GlobLimits(max_chars=5), "glob is 6 characters; the limit is 5 \\(glob_max_chars\\)"),
        ("{a,b}{c,d}", GlobLimits(max_alternatives=3), "more than 3 patterns \\(glob_max_alternatives\\)"),
        ("ab\\", GlobLimits(), "unfinished escape"),
        ("[b-a]", GlobLimits(), "reversed range"),
    ],
)
def test_limits_name_their_setting(pattern: str, limits: GlobLimits, message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        check_pattern(pattern, limits)


HOSTILE = [  # issue 17's patterns: seconds to minutes each with a backtracking engine
    ("*a*a*a*a*a*a*b", "a" * 80),
    ("*[a-z]" * 11 + "*#", "src/components/userprofilesettingspanelcontainer.tsx"),
    ("**/" * 7 + "x", "/".join(["d"] * 60) + "/y"),
]


@pytest.mark.parametrize(("pattern", "path"), HOSTILE)
def test_hostile_patterns_match_in_linear_time(pattern: str, path: str) -> None:
    check_pattern(pattern)
    started = time.perf_counter()
    for _ in range(100):
        assert matches_any(path, [pattern]) is False
    assert time.perf_counter() - started < 1.0  # 100 matches; the old engine took seconds for one
