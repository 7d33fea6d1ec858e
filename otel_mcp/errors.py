"""Domain errors.

Every failure a client can cause is one of these, each with a message precise
enough to act on. The MCP surface turns them into ``isError`` tool results or
JSON-RPC errors; nothing else should reach a client.
"""

from __future__ import annotations


class RuleError(Exception):
    """Base class: a request about rules that cannot be carried out."""

    code = "rule_error"


class InvalidRule(RuleError):
    """A rule (or an argument describing one) breaks the model's constraints."""

    code = "invalid_rule"


class RuleNotFound(RuleError):
    code = "not_found"

    def __init__(self, rule_id: str, version: int | None = None) -> None:
        self.rule_id = rule_id
        self.version = version
        what = f"rule {rule_id!r}" if version is None else f"version {version} of rule {rule_id!r}"
        super().__init__(f"{what} does not exist")


class RuleExists(RuleError):
    code = "already_exists"

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(f"rule {rule_id!r} already exists; use update_rule to change it")


class VersionConflict(RuleError):
    """Optimistic concurrency: the caller's ``expected_version`` is stale."""

    code = "version_conflict"

    def __init__(self, rule_id: str, expected: int, current: int) -> None:
        self.rule_id = rule_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"version conflict on rule {rule_id!r}: expected version {expected}, "
            f"current version is {current}; re-read the rule and retry"
        )


class CompositionError(RuleError):
    """The selected rules cannot be composed (import cycle, missing import, limits)."""

    code = "composition_error"


class FileAccessError(RuleError):
    """Rule files cannot be read or written; the message names the operating system's reason."""

    code = "file_error"


class LimitExceeded(RuleError):
    code = "limit_exceeded"


class ConfigError(Exception):
    """A setting has a value we refuse; the message names the setting."""
