"""Diagnostic vignettes from MedQuAD "symptoms" answers of the held-out test split.

A vignette is the symptoms answer of one test-split disease with every name of the disease taken out, asked
as "A patient presents with …; what is the most likely diagnosis?". The gold diagnosis is the disease's
focus and its MedQuAD synonyms. For the multiple-choice score each vignette gets three distractors: other
foci of the same specialty (from all splits of the prepared data), drawn with a per-vignette seed, never a
name or UMLS CUI of the gold disease. Everything is seeded, so the same data and seed give the same
vignettes, options and option order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from medlora.data.records import QARecord, clean_answer, normalise
from medlora.evaluation.vocabulary import normalise_words

MASK = "this condition"
TOKEN_MASK = "[…]"  # noqa: S105 - the mark left where a name was, not a secret
MIN_VIGNETTE_CHARS = 60
DEFAULT_MAX_CHARS = 600
MIN_NAME_CHARS = 3

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PERCENT = re.compile(r"\s*\b\d+(?:\.\d+)?\s?%")
_LINK = re.compile(r"https?://|www\.|following link|read more", re.IGNORECASE)
_FRACTION = re.compile(r"\s*\b\d+/\d+\b")
_LIST_DASH = re.compile(r"\s+-\s+|\s+-$")
_BOILERPLATE_CUT = re.compile(
    r"The Human Phenotype Ontology \(HPO\) has collected information.*$|"
    r"The Human Phenotype Ontology provides the following list of signs and symptoms for[^.]*\.?|"
    r"If the information is available, the table below includes[^.]*\.|"
    r"You can use the MedlinePlus Medical Dictionary[^.]*\.|"
    r"Signs and Symptoms Approximate number of patients \(when available\)|"
    r"Approximate number of patients \(when available\)",
    re.IGNORECASE | re.DOTALL,
)
# Words of a disease name that say nothing about which disease it is; never masked on their own.
_GENERIC_NAME_WORDS = frozenset(
    "disease diseases syndrome syndromes disorder disorders deficiency type types cancer cancers carcinoma tumor "
    "tumors tumour tumours cell cells familial hereditary congenital acquired acute chronic primary secondary "
    "juvenile adult infantile childhood neonatal autosomal dominant recessive linked with without and the of in "
    "due to skin heart infection infections form forms multiple benign malignant early late onset "
    "this that these those signs symptoms".split()
)


@dataclass
class Vignette:
    focus: str
    gold: list[str]  # every accepted name: the focus and its synonyms
    text: str  # the findings, names masked
    options: list[str] = field(default_factory=list)  # gold + distractors, shuffled
    answer_index: int = -1
    cuis: list[str] = field(default_factory=list)
    doc_id: str = ""
    url: str = ""

    @property
    def question(self) -> str:
        return f"A patient presents with the following findings: {self.text}\nWhat is the most likely diagnosis?"

    def to_record(self) -> QARecord:
        """The vignette as a record (question = the vignette, answer = the gold focus) for EvalSample."""
        return QARecord(question=self.question, answer=self.focus, source="vignette", focus=self.focus,
                        synonyms=[g for g in self.gold if g != self.focus], cuis=list(self.cuis),
                        doc_id=self.doc_id, url=self.url, qtype="diagnosis")

    def to_json(self) -> dict:
        return {"focus": self.focus, "gold": self.gold, "text": self.text, "options": self.options,
                "answer_index": self.answer_index, "doc_id": self.doc_id}


def names_of(focus: str, synonyms: Iterable[str]) -> list[str]:
    """The focus, its synonyms, each without a parenthesised part, and what the parentheses hold."""
    names: dict[str, None] = {}
    for name in (focus, *synonyms):
        name = name.strip()
        if not name:
            continue
        names[name] = None
        for inner in re.findall(r"\(([^)]+)\)", name):
            names[inner.strip()] = None
        stripped = re.sub(r"\s*\([^)]*\)", "", name).strip()
        if stripped:
            names[stripped] = None
    return [n for n in names if len(normalise(n)) >= MIN_NAME_CHARS]


def mentions_any(text: str, names: Iterable[str]) -> bool:
    """Whether ``text`` contains one of ``names`` as a whole word sequence (case/punctuation-insensitive)."""
    haystack = " " + " ".join(normalise_words(text)) + " "
    for name in names:
        needle = " ".join(normalise_words(name))
        if len(needle) >= MIN_NAME_CHARS and f" {needle} " in haystack:
            return True
    return False


def _name_pattern(names: Sequence[str]) -> re.Pattern[str] | None:
    """A regex for the names, longest first, tolerant to case, spacing, hyphens and a possessive 's."""
    alternatives = []
    for name in sorted(names, key=len, reverse=True):
        words = normalise_words(name)
        if words:
            alternatives.append(r"[\W_]*".join(re.escape(w) for w in words) + r"(?:['’]s)?")
    if not alternatives:
        return None
    return re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")(?![^\W_])", re.IGNORECASE)


def _distinctive_tokens(names: Sequence[str]) -> set[str]:
    """Name words that identify the disease on their own (eponyms, acronyms): not generic, ≥ 3 characters."""
    tokens = set()
    for name in names:
        for word in re.findall(r"[^\W_]+", name):
            if len(word) >= 3 and word.casefold() not in _GENERIC_NAME_WORDS and (
                word[0].isupper() or any(c.isdigit() for c in word)
            ):
                tokens.add(word)
    return tokens


def vignette_text(answer: str, names: Sequence[str], max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """The findings of a symptoms answer with the disease's names removed; None when too little is left
    or a name would still give the diagnosis away."""
    text = _BOILERPLATE_CUT.sub(" ", clean_answer(answer))
    text = " ".join(s for s in _SENTENCE.split(text) if s and not s.rstrip().endswith("?") and not _LINK.search(s))
    text = _FRACTION.sub("", _PERCENT.sub("", text))
    text = _LIST_DASH.sub(", ", text)
    pattern = _name_pattern(names)
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for token in _distinctive_tokens(names):
        # Eponyms and acronyms: masked where they appear capitalised as in the name (not plain English words).
        text = re.sub(rf"(?<![^\W_]){re.escape(token)}(?![^\W_])", TOKEN_MASK, text)
    text = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", text)).strip(" ,;")
    text = re.sub(r"(,\s*){2,}", ", ", text)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0].rstrip(" ,;") + " …"
    if len(text) < MIN_VIGNETTE_CHARS or mentions_any(text, names):
        return None
    return text


def _identity(record: QARecord) -> tuple[frozenset[str], frozenset[str]]:
    """A record's disease as (normalised names, CUIs), to tell a distractor from the gold disease."""
    return frozenset(normalise(n) for n in (record.focus, *record.synonyms) if n), frozenset(record.cuis)


def build_vignettes(
    test_records: Sequence[QARecord],
    distractor_records: Sequence[QARecord],
    n: int,
    seed: int = 42,
    *,
    n_options: int = 4,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Vignette]:
    """Up to ``n`` vignettes from the ``symptoms`` records of the test split (one per disease), each with
    ``n_options`` options (gold + distractor foci from ``distractor_records``) when enough foci exist."""
    if n <= 0:
        return []
    candidates: dict[str, QARecord] = {}
    for record in test_records:
        if record.qtype == "symptoms" and record.focus and normalise(record.focus) not in candidates:
            candidates[normalise(record.focus)] = record
    order = sorted(candidates)
    random.Random(seed).shuffle(order)

    pool: dict[str, QARecord] = {}
    for record in distractor_records:
        if record.focus:
            pool.setdefault(normalise(record.focus), record)
    pool_keys = sorted(pool)
    identities = {key: _identity(pool[key]) for key in pool_keys}

    vignettes: list[Vignette] = []
    for key in order:
        if len(vignettes) >= n:
            break
        record = candidates[key]
        names = names_of(record.focus, record.synonyms)
        text = vignette_text(record.answer, names, max_chars=max_chars)
        if text is None:
            continue
        vignette = Vignette(focus=record.focus, gold=[record.focus, *[s for s in record.synonyms if s]],
                            text=text, cuis=list(record.cuis), doc_id=record.doc_id, url=record.url)
        gold_keys = {normalise(g) for g in names}
        gold_cuis = frozenset(record.cuis)
        choices = [k for k in pool_keys if not (identities[k][0] & gold_keys or identities[k][1] & gold_cuis)]
        rng = random.Random(f"{seed}:{key}")
        distractors = rng.sample(choices, min(n_options - 1, len(choices)))
        if distractors:
            options = [record.focus, *(pool[k].focus for k in distractors)]
            rng.shuffle(options)
            vignette.options = options
            vignette.answer_index = options.index(record.focus)
        vignettes.append(vignette)
    return vignettes
