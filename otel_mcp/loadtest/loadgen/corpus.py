"""Realistic workloads built from the real rule corpus (``shared/corpus/awesome-cursorrules``).

``build_rules(n, seed)`` makes ``n`` rule specs whose bodies are stitched from
corpus paragraphs (never a repeated string): sizes follow a log-normal
distribution clipped to 1 KiB .. ~0.5 MiB (median ~6 KiB, a long tail up to the
``max_body_bytes`` limit, as real rule sets have: many short style guides, a few huge
reference documents). Activation and globs are realistic too: a few ``always``
rules, most ``auto`` on a language glob scoped to one of ``SERVICES`` service
folders, the rest ``agent_requested``/``manual``. ``request_files(rank)`` gives
the context files of request number ``rank`` (a folder and two languages), so a
composition selects a few dozen rules out of 1,000.

The corpus folder is the ``corpus_dir`` setting (``OTEL_MCP_CORPUS_DIR``), else
``../shared/corpus/awesome-cursorrules/rules`` next to the checkout. Without ``.mdc`` files there, the
sample rules shipped in ``otel_mcp/samples`` are the text, and one line on stderr says so.
"""

from __future__ import annotations

import functools
import math
import random
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from otel_mcp.config import Settings
from otel_mcp.loadtest import CHECKOUT
from otel_mcp.store import RuleStore

DEFAULT_CORPUS_DIR = CHECKOUT.parent / "shared" / "corpus" / "awesome-cursorrules" / "rules"  # beside the checkout
MIN_BYTES = 1024
MAX_BYTES = Settings.max_body_bytes - 4096  # below the server's body limit, with room for the header
SERVICES = 24
LANGUAGES: dict[str, tuple[str, ...]] = {
    "py": ("python", "django", "fastapi", "flask", "pytorch", "pandas", "jupyter", "ml", "data"),
    "ts": ("typescript", "angular", "node", "nestjs", "deno", "bun"),
    "tsx": ("react", "next", "remix", "tailwind", "shadcn", "ui"),
    "vue": ("vue", "nuxt"),
    "svelte": ("svelte", "astro"),
    "go": ("go", "golang"),
    "rs": ("rust", "solana", "tauri"),
    "java": ("java", "spring", "kotlin", "android"),
    "swift": ("swift", "ios", "swiftui"),
    "cs": ("csharp", "unity", "dotnet", "net"),
    "php": ("php", "laravel", "wordpress", "drupal"),
    "rb": ("ruby", "rails"),
    "sql": ("sql", "postgres", "database", "supabase", "prisma"),
    "md": ("docs", "writing", "markdown"),
}


@dataclass(frozen=True)
class CorpusDoc:
    stem: str
    description: str
    paragraphs: tuple[str, ...]


def corpus_folder() -> Path:
    """Where the corpus is looked for: the ``corpus_dir`` setting, else next to the checkout."""
    return Settings.load().corpus_dir or DEFAULT_CORPUS_DIR


def corpus_dir() -> Path | None:
    """The corpus folder when it holds ``.mdc`` rules, else None."""
    folder = corpus_folder()
    return folder if folder.is_dir() and any(folder.glob("*.mdc")) else None


@functools.cache
def _say_fallback(folder: Path) -> None:
    print(f"otel-mcp perf: no .mdc rules in {folder} (set OTEL_MCP_CORPUS_DIR to the corpus); "
          "workloads are built from the sample rules shipped with otel-mcp", file=sys.stderr, flush=True)


def corpus_texts() -> list[tuple[str, str]]:
    """(stem, text) of every corpus rule, or of the shipped sample rules when there is no corpus."""
    folder = corpus_dir()
    if folder is not None:
        files = sorted(folder.glob("*.mdc"))
        return [(path.stem, path.read_text(encoding="utf-8", errors="replace")) for path in files]
    _say_fallback(corpus_folder())
    samples = sorted((f for f in (resources.files("otel_mcp") / "samples").iterdir() if f.name.endswith(".mdc")),
                     key=lambda f: f.name)
    return [(f.name.removesuffix(".mdc"), f.read_text(encoding="utf-8")) for f in samples]


def _split_front(text: str) -> tuple[str, str]:
    if text.startswith("---"):
        parts = text.split("---", 2)
        if len(parts) == 3:
            match = re.search(r"^description:\s*\"?(.*?)\"?\s*$", parts[1], re.M)
            return (match.group(1)[:500] if match else ""), parts[2].lstrip("\n")
    return "", text


def load_corpus() -> list[CorpusDoc]:
    docs: list[CorpusDoc] = []
    for stem, text in corpus_texts():
        description, body = _split_front(text)
        paragraphs = tuple(p.strip() for p in re.split(r"\n\s*\n", body) if p.strip())
        if paragraphs:
            docs.append(CorpusDoc(stem, description, paragraphs))
    return docs


def _language(stem: str, rng: random.Random) -> str:
    words = set(re.split(r"[^a-z0-9]+", stem.lower()))
    for ext, keys in LANGUAGES.items():
        if words & set(keys):
            return ext
    return rng.choice(sorted(LANGUAGES))


def body_size(rng: random.Random) -> int:
    """Log-normal, median ~6 KiB, clipped to [1 KiB, ~max_body_bytes]; ~1% of rules are > 256 KiB."""
    size = int(math.exp(rng.gauss(math.log(6 * 1024), 1.6)))
    return max(MIN_BYTES, min(MAX_BYTES, size))


def make_body(docs: list[CorpusDoc], home: int, size: int, rng: random.Random, rule_id: str) -> str:
    """A markdown body of about ``size`` bytes: the home document first, then paragraphs from others."""
    parts = [f"# {rule_id}\n"]
    used = len(parts[0])
    order = [home] + [rng.randrange(len(docs)) for _ in range(4096)]
    section = 0
    for index in order:
        doc = docs[index]
        if index != home:
            section += 1
            heading = f"\n## Section {section}: {doc.stem.replace('-', ' ')}\n"
            parts.append(heading)
            used += len(heading)
        start = rng.randrange(len(doc.paragraphs)) if index != home else 0
        for paragraph in doc.paragraphs[start:]:
            parts.append(paragraph + "\n\n")
            used += len(paragraph.encode()) + 2
            if used >= size:
                return "".join(parts)
    return "".join(parts)


def build_rules(count: int = 1000, seed: int = 42, max_bytes: int = MAX_BYTES) -> list[dict[str, Any]]:
    docs = load_corpus()
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    for i in range(count):
        home = i % len(docs)
        doc = docs[home]
        rule_id = re.sub(r"[^a-z0-9._-]+", "-", f"{doc.stem[:90]}-{i:04d}".lower()).strip("-._")
        ext = _language(doc.stem, rng)
        roll = rng.random()
        if i < 4:
            activation, globs = "always", []
        elif roll < 0.70:
            service = rng.randrange(SERVICES)
            activation, globs = "auto", [f"services/svc{service:02d}/**/*.{ext}"]
            if rng.random() < 0.15:
                globs.append(f"**/*.{ext}")
        elif roll < 0.88:
            activation, globs = "agent_requested", []
        else:
            activation, globs = "manual", []
        size = min(max_bytes, body_size(rng)) if i >= 4 else 2048
        specs.append({
            "id": rule_id,
            "body": make_body(docs, home, size, rng, rule_id),
            "description": doc.description or doc.stem.replace("-", " "),
            "activation": activation,
            "globs": globs,
            "tags": [ext, f"team{rng.randrange(8)}"],
            "priority": rng.randrange(10),
        })
    return specs


def request_files(rank: int) -> list[str]:
    """Context files of request ``rank``: one service folder, two languages."""
    exts = sorted(LANGUAGES)
    service = rank % SERVICES
    a = exts[(rank // SERVICES) % len(exts)]
    b = exts[(rank // SERVICES + rank + 1) % len(exts)]
    return [f"services/svc{service:02d}/app/main.{a}", f"services/svc{service:02d}/lib/util{rank}.{b}"]


def seed_database(db: Path, specs: list[dict[str, Any]]) -> int:
    """Write the rules straight into the store (setup, not measured); returns the rule count."""
    store = RuleStore(db)
    try:
        for spec in specs:
            store.create(spec)
        return store.count()
    finally:
        store.close()
