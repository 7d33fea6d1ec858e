"""Import and export of rule folders, confined to a root directory.

Every path is resolved (symlinks included) and must stay inside the root the
operator configured: a client can name folders below it, never above it.
Each file is imported in its own transaction and reported on its own, so one
malformed file never aborts the batch or leaves a half-written rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from otel_mcp.errors import InvalidRule, RuleError
from otel_mcp.interchange.formats import FORMATS, detect_format, file_name, to_fields, to_text
from otel_mcp.store.sqlite import RuleStore, StoreBusy

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
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise InvalidRule(f"directory {relative!r} is outside the allowed root {str(base)!r}")
    return target


def _inside(base: Path, path: Path) -> bool:
    real = path.resolve()
    return real == base or base in real.parents


def import_directory(store: RuleStore, root: Path, directory: str, fmt: str = "auto") -> list[FileResult]:
    if fmt != "auto" and fmt not in FORMATS:
        raise InvalidRule(f"format {fmt!r} is not one of: auto, {', '.join(FORMATS)}")
    folder = confine(root, directory)
    if not folder.is_dir():
        raise InvalidRule(f"directory {directory!r} does not exist under the allowed root")
    base = root.resolve()
    results: list[FileResult] = []
    seen: dict[str, str] = {}
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())
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
        if not _inside(base, path):
            results.append(FileResult(shown, "error", error="symlink points outside the allowed root"))
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise InvalidRule(f"file is larger than {MAX_FILE_BYTES} bytes")
            text = path.read_bytes().decode("utf-8")  # no newline translation: exported text round-trips exactly
            fields = to_fields(relative, text, kind)
            rule_id = fields.get("id")
            if isinstance(rule_id, str) and rule_id in seen:
                raise InvalidRule(f"rule id {rule_id!r} is also produced by {seen[rule_id]}")
            rule, status = store.upsert(fields)
            seen[rule.id] = shown
            results.append(FileResult(shown, status, rule.id, rule.version))
        except UnicodeDecodeError:
            results.append(FileResult(shown, "error", error="file is not valid UTF-8"))
        except (RuleError, StoreBusy) as exc:
            results.append(FileResult(shown, "error", error=str(exc)))
        except OSError as exc:
            results.append(FileResult(shown, "error", error=f"cannot read file: {exc.strerror}"))
    return results


def export_directory(store: RuleStore, root: Path, directory: str, fmt: str = "cursor") -> list[FileResult]:
    if fmt not in FORMATS:
        raise InvalidRule(f"format {fmt!r} is not one of: {', '.join(FORMATS)}")
    folder = confine(root, directory)
    folder.mkdir(parents=True, exist_ok=True)
    _, rules = store.snapshot()
    results: list[FileResult] = []
    if fmt == "agents":
        target = folder / "AGENTS.md"
        sections = [f"<!-- rule:{r.id}@{r.version} -->\n{r.body.strip()}\n" for r in rules if r.enabled]
        _write_atomic(folder, target, "\n".join(sections))
        return [FileResult("AGENTS.md", "written", None, None)]
    for rule in rules:
        name = file_name(rule, fmt)
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder, target, to_text(rule, fmt))
        results.append(FileResult(name, "written", rule.id, rule.version))
    return results


def _write_atomic(folder: Path, target: Path, text: str) -> None:
    """Write via a temporary file and rename, refusing to follow a symlink out of ``folder``."""
    if target.is_symlink() or not _inside(folder.resolve(), target.parent):
        raise InvalidRule(f"refusing to write {target.name!r}: it is a symlink or outside the export folder")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
