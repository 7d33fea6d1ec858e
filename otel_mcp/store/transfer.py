"""``otel-mcp migrate``: copy every rule with its whole history from one store to another (SQLite to
PostgreSQL, or back), then check that the copy reads back the same.

The target must be empty; the copy is one write transaction on it (all or nothing). Entries keep their
versions, operations, etags and timestamps, so ``get_rule(version=...)``, ``rule_history`` and
``rollback_rule`` work on the target as they did on the source. Stop the servers writing to the source
first: writes made during the copy are not in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from otel_mcp.errors import InvalidRule, RuleError
from otel_mcp.store.backends import open_store, redact


class CopyMismatch(RuleError):
    """The target does not read back what the source holds (nothing else should write to either)."""


@dataclass(frozen=True)
class Copied:
    rules: int
    history_entries: int
    source: str
    target: str

    def summary(self) -> str:
        return (f"{self.rules} rules and {self.history_entries} history entries copied from {self.source} "
                f"to {self.target}; the target reads back the same")


def copy_store(source_db: Path | str, target_db: Path | str) -> Copied:
    """Copy ``source_db`` into the empty ``target_db`` (``db`` settings: file paths or URLs) and verify it.

    :raises InvalidRule: the target already holds rules or history
    :raises CopyMismatch: the target reads back differently
    """
    if isinstance(source_db, Path) and not source_db.is_file():
        raise InvalidRule(f"there is no database at {source_db}")
    source = open_store(source_db, read_only=True)
    try:
        target = open_store(target_db)
        try:
            history = source.full_history()
            rules = source.snapshot()[1]
            target.restore_history(history)
            if target.full_history() != history or target.snapshot()[1] != rules:
                raise CopyMismatch(f"the copy in {redact(target_db)} does not read back as {redact(source_db)}: "
                                   "was either written to during the copy?")
        finally:
            target.close()
    finally:
        source.close()
    return Copied(len(rules), len(history), redact(source_db), redact(target_db))
