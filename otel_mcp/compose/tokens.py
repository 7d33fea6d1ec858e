"""Token estimate used for budgets.

One token per four characters (rounded up), plus one per line break. It is the
usual rule of thumb for English text and markdown with BPE tokenizers (within
~15% for cl100k-style vocabularies on prose and code), costs a ``len()`` and a
``count()``, and never under-counts short texts to zero. Budgets are guidance
for an agent's context window, not an exact contract, so speed wins.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    return -(-len(text) // CHARS_PER_TOKEN) + text.count("\n")
