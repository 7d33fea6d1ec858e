"""Tool and resource results as they travel: each payload once, and never larger than a client reads.

The MCP specification (2025-06-18, "Structured Content") says a tool that returns structured content
SHOULD also return it serialized as JSON in a text block, for clients that read only text. Two shapes
follow (docs/architecture.md, "Payloads"):

- a *document* (a composition's markdown, a rule's body) is text for the model: it travels once, as
  the first text block; the structured content is the metadata about it (the manifest, the rule's
  fields), repeated compactly as JSON in a second text block;
- any other result is its structured content plus that content's compact JSON as text.

Nothing is JSON-encoded inside a JSON string except the small metadata, and every result is measured
against ``max_result_bytes`` (the official client refuses an SSE event over 1 MiB): a larger result is
an error naming its size and what to ask for instead, never a stream the client cannot read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pydantic_core
from mcp_types import CallToolResult, TextContent

from otel_mcp.errors import LimitExceeded

# The JSON-RPC envelope and the result's own keys ("content", "type", "isError"...): a few hundred bytes.
ENVELOPE_BYTES = 512
# What a rule read back carries besides its fields (version, etag, times, body_bytes) plus the envelope.
READ_RESERVE_BYTES = ENVELOPE_BYTES + 512
# No character encodes to more than 6 bytes in a JSON string ("\u001f").
MAX_BYTES_PER_CHAR = 6


def compact_json(value: Any) -> str:
    return pydantic_core.to_json(value).decode()


def encoded_len(value: Any) -> int:
    """Bytes of ``value`` once encoded as JSON the way the SDK sends it (UTF-8, no ASCII escaping)."""
    return len(pydantic_core.to_json(value))


def data_result(data: dict[str, Any]) -> CallToolResult:
    """Structured content plus its compact JSON as text (the specification's backwards-compatible form)."""
    return CallToolResult(content=[TextContent(type="text", text=compact_json(data))], structured_content=data)


def document_result(document: str, metadata: dict[str, Any]) -> CallToolResult:
    """The document once as text, its metadata as structured content and again as compact JSON text."""
    return CallToolResult(
        content=[TextContent(type="text", text=document), TextContent(type="text", text=compact_json(metadata))],
        structured_content=metadata,
    )


def result_size(result: CallToolResult) -> int:
    """The encoded size of a result built above, within ``ENVELOPE_BYTES``.

    Its structured content is, by construction, the JSON in its last text block.
    """
    texts = [getattr(block, "text", "") for block in result.content]
    size = sum(encoded_len(t) for t in texts) + ENVELOPE_BYTES
    if result.structured_content is not None and texts:
        size += len(texts[-1].encode())
    return size


def size_bound(result: CallToolResult) -> int:
    """An upper bound of ``result_size`` that costs no encoding."""
    texts = [getattr(block, "text", "") for block in result.content]
    chars = sum(len(t) for t in texts) * MAX_BYTES_PER_CHAR
    if result.structured_content is not None and texts:
        chars += len(texts[-1]) * 4  # UTF-8: at most 4 bytes a character
    return chars + ENVELOPE_BYTES


class ResultLimit:
    """``max_result_bytes``: the largest result (tool call or resource read) the server sends.

    :param max_bytes: the limit, in bytes of the encoded result
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    @property
    def budget(self) -> int:
        """Bytes left for payload once the envelope is accounted for."""
        return max(self.max_bytes - ENVELOPE_BYTES, 0)

    def refusal(self, size: int, hint: str) -> LimitExceeded:
        return LimitExceeded(
            f"the result is {size} bytes; the limit is {self.max_bytes} bytes (max_result_bytes): {hint}"
        )

    def check(self, result: CallToolResult, hint: str) -> CallToolResult:
        if size_bound(result) > self.max_bytes:  # most results are far below: measuring costs an encoding
            size = result_size(result)
            if size > self.max_bytes:
                raise self.refusal(size, hint)
        return result

    def check_text(self, text: str, hint: str) -> str:
        """A resource's text: refused when its encoded form would not fit."""
        if len(text) * MAX_BYTES_PER_CHAR > self.budget:  # else it fits without measuring
            size = encoded_len(text) + ENVELOPE_BYTES
            if size > self.max_bytes:
                raise self.refusal(size, hint)
        return text

    def fit(self, items: Sequence[Any], cost: Callable[[Any], int]) -> int:
        """How many of ``items``, from the first, fit in the budget (at least one: each item fits alone)."""
        used = 0
        for count, item in enumerate(items):
            used += cost(item) + 1  # and a comma
            if used > self.budget:
                return max(count, 1)
        return len(items)


def data_cost(item: Any) -> int:
    """An item of a structured result's list: once as JSON in the structured content, once escaped in the text."""
    text = compact_json(item)
    return len(text.encode()) + encoded_len(text)


def text_cost(item: Any) -> int:
    """An item of a JSON document sent as text (a resource): its JSON, escaped once more."""
    return encoded_len(compact_json(item))
