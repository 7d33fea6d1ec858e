"""Realistic rules and requests for the cache benchmarks and tests, built from the real corpus.

The corpus is the load suite's (``otel_mcp.loadtest.loadgen.corpus``: the ``corpus_dir`` setting, else
``../shared/corpus/awesome-cursorrules/rules`` beside the checkout, 257 Cursor rules). Larger rule sets reuse its bodies
under new ids, each copy made distinct (its own heading, and every fourth one
concatenated with a second body for a larger size), never a repeated string.
"""

from __future__ import annotations

import random
from typing import Any

import yaml

from otel_mcp.loadtest.loadgen.corpus import corpus_dir, corpus_texts

EXTENSIONS = 40  # distinct auto globs; with 1,000 rules each selects ~25
ALWAYS_RULES = 3


def corpus_available() -> bool:
    return corpus_dir() is not None


def load_corpus() -> list[tuple[str, str, str]]:
    """(stem, description, body) of every corpus file, sorted by name."""
    out = []
    for stem, text in corpus_texts():
        description, body = "", text
        if text.startswith("---"):
            _, front, rest = [*text.split("---", 2), "", ""][:3]
            body = rest.lstrip("\n")
            try:
                meta = yaml.safe_load(front)
                if isinstance(meta, dict):
                    description = str(meta.get("description") or "")[:1000]
            except yaml.YAMLError:
                pass
        out.append((stem, description, body or text))
    return out


def rule_specs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` rule specs: a few ``always``, the rest ``auto`` on one of ``EXTENSIONS`` globs."""
    corpus = load_corpus()
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        stem, description, body = corpus[i % len(corpus)]
        copy = i // len(corpus)
        rule_id = f"{stem[:100]}-{copy}".lower().replace("_", "-")
        if copy:
            body = f"# {stem} (variant {copy})\n\n{body}"
            if i % 4 == 0:
                body += "\n\n" + corpus[rng.randrange(len(corpus))][2]
        specs.append(
            {
                "id": rule_id,
                "body": body,
                "description": description,
                "activation": "always" if i < ALWAYS_RULES else "auto",
                "globs": [f"**/*.x{i % EXTENSIONS}"],
                "priority": rng.randrange(10),
            }
        )
    return specs


def request_files(rank: int) -> list[str]:
    """The context files of request number ``rank``: two file types, so ~50 of 1,000 rules match."""
    a, b = rank % EXTENSIONS, (rank // EXTENSIONS + rank + 1) % EXTENSIONS
    return [f"src/mod{rank}/main.x{a}", f"src/mod{rank}/util.x{b}"]
