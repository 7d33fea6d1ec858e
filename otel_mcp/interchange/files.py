"""Import and export of rule folders, confined to a root directory.

Every path is resolved (symlinks included) and must stay inside the root the
operator configured: a client can name folders below it, never above it.
Each rule is imported in its own transaction and reported on its own, so one
malformed file never aborts the batch or leaves a half-written rule. Files are
read and written through ``ConfinedFiles``, which follows no symlink once a
path is checked; export checks every path before it creates anything.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from otel_mcp.errors import FileAccessError, InvalidRule, RuleError
from otel_mcp.interchange.confined import ConfinedFiles
from otel_mcp.interchange.formats import AGENTS_FILE, FORMATS, agents_text, detect_format, file_name, to_rules, to_text
from otel_mcp.store.base import RuleStoreBase, StoreBusy
from otel_mcp.store.model import Rule

MAX_IMPORT_FILES = 10_000
MAX_FILE_BYTES = 4 * 1024 * 1024  # 4mb: a rule file larger than this is not a rule file


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str  # created | updated | unchanged | error | skipped | written
    rule_id: str | None = None
    version: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def confine(root: Path, relative: str) -> Path:
    """``root / relative`` resolved, or ``InvalidRule`` if it would leave ``root``."""
    base = root.resolve()
    if not isinstance(relative, str) or "\x00" in relative:
        raise InvalidRule("directory must be a path string")
    target = _inside(base, base / relative)
    if target is None:
        raise InvalidRule(f"directory {relative!r} is outside the allowed root {str(base)!r}")
    return target


def file_error(action: str, directory: str, exc: OSError) -> FileAccessError:
    """A file-system failure as a domain error naming its cause (e.g. ENAMETOOLONG), without a traceback."""
    shown = repr(directory) if len(directory) <= 80 else f"{directory[:60]!r}... ({len(directory.encode())} bytes)"
    code = errno.errorcode.get(exc.errno or 0, "OSError")
    hint = "; a file or folder name is at most 255 bytes" if exc.errno == errno.ENAMETOOLONG else ""
    return FileAccessError(f"cannot {action} {shown}: {exc.strerror or exc} ({code}){hint}")


def _inside(base: Path, path: Path) -> Path | None:
    """``path`` with its symlinks resolved, or None if that leaves ``base``.

    ``os.path.realpath``, because ``Path.resolve`` raises on a symlink loop (Python 3.11, 3.12).
    """
    real = Path(os.path.realpath(path))
    return real if real == base or base in real.parents else None


def import_directory(store: RuleStoreBase, root: Path, directory: str, fmt: str = "auto") -> list[FileResult]:
    if fmt != "auto" and fmt not in FORMATS:
        raise InvalidRule(f"format {fmt!r} is not one of: auto, {', '.join(FORMATS)}")
    folder = confine(root, directory)
    try:
        if not folder.is_dir():
            raise InvalidRule(f"directory {directory!r} does not exist under the allowed root")
        candidates = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    except OSError as exc:
        raise file_error("read folder", directory, exc) from None
    base = root.resolve()
    files = ConfinedFiles(base)
    results: list[FileResult] = []
    seen: dict[str, str] = {}
    if len(candidates) > MAX_IMPORT_FILES:
        raise InvalidRule(f"{directory!r} holds {len(candidates)} files; the limit is {MAX_IMPORT_FILES}")
    for path in candidates:
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        # Detect on the whole path, so that naming the folder `.claude/rules` itself still finds Claude rules;
        # an explicit format reads only the files of that format.
        detected = detect_format(PurePosixPath(folder.as_posix()) / relative)
        kind = detected if fmt == "auto" else fmt
        if detected is None or detected != kind:
            continue
        shown = relative.as_posix()
        real = _inside(base, path)
        if real is None:
            results.append(FileResult(shown, "error", error="symlink points outside the allowed root"))
            continue
        try:
            # read through no symlink: a link swapped in after the check above is refused, not followed
            data = files.read(PurePosixPath(real.relative_to(base).as_posix()), MAX_FILE_BYTES)
            text = data.decode("utf-8")  # no newline translation: exported text round-trips exactly
            rules = to_rules(relative, text, kind)
        except UnicodeDecodeError:
            results.append(FileResult(shown, "error", error="file is not valid UTF-8"))
        except RuleError as exc:
            results.append(FileResult(shown, "error", error=str(exc)))
        except OSError as exc:
            results.append(FileResult(shown, "error", error=f"cannot read file: {exc.strerror}"))
        else:
            results.extend(_import_rule(store, shown, fields, seen) for fields in rules)
    return results


def _import_rule(store: RuleStoreBase, shown: str, fields: dict[str, Any], seen: dict[str, str]) -> FileResult:
    rule_id = fields.get("id")
    try:
        if isinstance(rule_id, str) and rule_id in seen:
            raise InvalidRule(f"rule id {rule_id!r} is also produced by {seen[rule_id]}")
        rule, status = store.upsert(fields)
    except (RuleError, StoreBusy) as exc:
        return FileResult(shown, "error", rule_id if isinstance(rule_id, str) else None, error=str(exc))
    seen[rule.id] = shown
    return FileResult(shown, status, rule.id, rule.version)


def export_directory(store: RuleStoreBase, root: Path, directory: str, fmt: str = "cursor") -> list[FileResult]:
    """Write every rule as files of ``fmt`` into ``root/directory``; nothing is created unless every
    path is safe to write (no symlink on the way, no non-file at a target)."""
    if fmt not in FORMATS:
        raise InvalidRule(f"format {fmt!r} is not one of: {', '.join(FORMATS)}")
    confine(root, directory)  # names an escape, symlinks included, in the caller's terms
    base = root.resolve()
    folder = PurePosixPath(os.path.relpath(os.path.normpath(base / directory), base))
    _, rules = store.snapshot()
    if fmt == "agents":
        files: list[tuple[str, str, Rule | None]] = [(AGENTS_FILE, agents_text(rules), None)]
    else:
        files = [(file_name(rule, fmt), to_text(rule, fmt), rule) for rule in rules]
    confined = ConfinedFiles(base)
    targets = [(PurePosixPath(folder, name), text) for name, text, _ in files]
    try:
        for target, _ in targets:
            confined.check(target)
        for target, text in targets:
            confined.write(target, text)
    except OSError as exc:
        raise file_error("write to folder", directory, exc) from None
    return [
        FileResult(name, "written", rule.id if rule else None, rule.version if rule else None)
        for name, _, rule in files
    ]
