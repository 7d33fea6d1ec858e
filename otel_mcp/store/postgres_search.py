"""Full-text search on PostgreSQL with the same tokens as SQLite's FTS5 ``unicode61`` tokenizer.

PostgreSQL's ``tsvector``/``tsquery`` hold, index (GIN) and match the rules; the words are cut here,
not by PostgreSQL's parser, so that both backends find the same rules for the same query: its parser
keeps ``foo-bar``, file paths, URLs and version numbers as single tokens and classifies non-ASCII
letters by the database's locale, where ``unicode61`` splits on everything but letters and digits,
folds case and drops diacritics from Latin letters. Ranking (``ts_rank``) differs from FTS5's bm25:
the hits are the same, their order may not be.

- ``tsvector_literal(id, description, body)``: the rule's lexemes with positions; a gap between the
  fields keeps a phrase from matching across two of them (FTS5 matches within one column);
- ``tsquery_literal(terms)``: every term a phrase (``a <-> b`` for ``a-b``), all terms required,
  as FTS5's quoted terms are; ``None`` when no term has a word (FTS5 then finds nothing).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_TOKEN = re.compile(r"[^\W_]+")  # letters and digits (unicode61's default categories L*, N*)
MAX_POSITION = 16383  # a tsvector position's largest value; later words share it
MAX_POSITIONS_PER_LEXEME = 256  # what a tsvector keeps per lexeme
MAX_LEXEME_BYTES = 2046  # longer words cannot be stored in a tsvector (FTS5 would keep them)


def words(text: str) -> list[str]:
    """``text`` cut and folded as ``unicode61`` does (``remove_diacritics=1``)."""
    return [_fold(m.group()) for m in _TOKEN.finditer(text)]


def _fold(word: str) -> str:
    word = word.lower()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(fields: Iterable[str]) -> str:
    positions: dict[str, list[int]] = {}
    position = 0
    for text in fields:
        position += 1  # the gap between fields
        for word in words(text):
            position += 1
            if len(word.encode()) > MAX_LEXEME_BYTES:
                continue
            kept = positions.setdefault(word, [])
            at = min(position, MAX_POSITION)
            if len(kept) < MAX_POSITIONS_PER_LEXEME and (not kept or kept[-1] != at):
                kept.append(at)
    return " ".join(f"{_quote(word)}:{','.join(map(str, at))}" for word, at in positions.items())


def tsquery_literal(terms: Iterable[str]) -> str | None:
    phrases = [" <-> ".join(_quote(w) for w in found) for term in terms if (found := words(term))]
    return " & ".join(f"({p})" for p in phrases) if phrases else None
