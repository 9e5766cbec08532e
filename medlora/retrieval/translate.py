"""French → English query expansion, so a French question retrieves the (English) source index.

The index holds MedQuAD, the abstracts and the English built-in sets, tokenised for English: a French question
("Diagnostic d'une lésion pigmentée asymétrique ?") shares almost no token with them, and BM25 then returns
whatever matches "diagnostic". Instead of a translation model, a term map does the job for retrieval: a
curated list of clinical terms (``fr_en_terms.tsv`` beside this module) plus the condition names of the
team-written French sets, each of which records its English ``focus_en``. The expanded query is the question
followed by the English terms of every French term found in it; only French questions are expanded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from medlora.data.language import detect_language

if TYPE_CHECKING:
    from medlora.retrieval.index import SourceIndex

_TERMS_FILE = "fr_en_terms.tsv"
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_ELISION = re.compile(r"^(?:l|d|j|qu|n|s|c|m|t)['’]", re.IGNORECASE)


def _fold_word(word: str) -> str:
    """Lowercase, no accents, no elided article (``l'``, ``d'``), no ligature, no plural -s/-x."""
    word = _ELISION.sub("", word.lower()).replace("œ", "oe").replace("æ", "ae")
    word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    if len(word) > 3 and word[-1] in "sx":
        word = word[:-1]
    return word


def fold(text: str) -> tuple[str, ...]:
    """The words of ``text``, folded for matching (see :func:`_fold_word`)."""
    return tuple(_fold_word(w) for w in _WORD.findall(text))


def read_term_map(lines: Iterable[str]) -> dict[tuple[str, ...], str]:
    """``french<TAB>english`` lines (``#`` comments and blanks skipped) → folded French words → English."""
    mapping: dict[tuple[str, ...], str] = {}
    for line in lines:
        line = line.split("#", 1)[0].rstrip("\n")
        if not line.strip():
            continue
        french, _, english = line.partition("\t")
        if french.strip() and english.strip():
            mapping[fold(french)] = english.strip()
    return mapping


@lru_cache(maxsize=1)
def default_term_map() -> dict[tuple[str, ...], str]:
    """The curated term list plus (focus → focus_en) of every non-English built-in set."""
    from medlora.data.sources.json_pairs import iter_json_pairs
    from medlora.specialties import DEFAULT_LANGUAGE, builtin_sets, split_variant

    path = resources.files("medlora.retrieval") / _TERMS_FILE
    mapping = read_term_map(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else {}
    for name, set_path in builtin_sets().items():
        if split_variant(name)[1] == DEFAULT_LANGUAGE:
            continue
        for record in iter_json_pairs(set_path):
            english = str(record.metadata.get("focus_en", "")).strip()
            if record.focus and english:
                mapping.setdefault(fold(record.focus), english)
    return mapping


def translate_terms(text: str, mapping: dict[tuple[str, ...], str] | None = None) -> list[str]:
    """English equivalents of the mapped French terms in ``text``, longest match first, in order."""
    mapping = default_term_map() if mapping is None else mapping
    if not mapping:
        return []
    longest = max(len(key) for key in mapping)
    words = fold(text)
    found: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(longest, len(words) - i), 0, -1):
            english = mapping.get(words[i:i + size])
            if english is not None:
                if english not in found:
                    found.append(english)
                i += size
                break
        else:
            i += 1
    return found


def expand_query(query: str, mapping: dict[tuple[str, ...], str] | None = None) -> str:
    """The query plus English terms when it is French; any other query is returned unchanged."""
    if detect_language(query) != "fr":
        return query
    terms = translate_terms(query, mapping)
    return f"{query} {' '.join(terms)}" if terms else query


@dataclass
class RelevanceReport:
    """How often the sources retrieved for French questions are about the question's condition."""

    questions: int
    hit_at_k: float  # share of questions with at least one relevant source in the top k
    precision_at_k: float  # share of returned sources (up to k per question) that are relevant
    k: int


def _same_condition(source_focus: str, english_focus: str) -> bool:
    a, b = " ".join(fold(source_focus)), " ".join(fold(english_focus))
    return bool(a and b) and (a == b or f" {b} " in f" {a} " or f" {a} " in f" {b} ")


def cross_language_relevance(
    index: SourceIndex, pairs: Sequence[tuple[str, str]], k: int = 3, *, expand: bool = True,
    mapping: dict[tuple[str, ...], str] | None = None,
) -> RelevanceReport:
    """Search ``index`` with each French question of ``(question, english_focus)`` pairs and judge each
    returned source relevant when its focus names the same condition as the question's ``focus_en``."""
    hits, relevant, returned = 0, 0, 0
    for question, english_focus in pairs:
        query = expand_query(question, mapping) if expand else question
        # Search the index without its own expansion hook, so ``expand=False`` really is the baseline.
        results = index.search(query, k=k, expand=False)
        good = sum(_same_condition(r.source.focus or r.source.title, english_focus) for r in results)
        hits += good > 0
        relevant += good
        returned += len(results)
    n = len(pairs)
    return RelevanceReport(questions=n, hit_at_k=hits / n if n else 0.0,
                           precision_at_k=relevant / returned if returned else 0.0, k=k)
