"""The one record type every source is turned into, and the cleaning every record gets."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

_WS = re.compile(r"\s+")
SNIPPET_CHARS = 500  # what a prompt shows of one source
_TAG = re.compile(r"<[^>]{1,200}>")
# Boilerplate that NIH pages put in answers and that a model should not learn to parrot.
_BOILERPLATE = [
    re.compile(r"^\s*Key Points\s*[-–]?\s*", re.IGNORECASE),
    re.compile(r"\(This list may not be complete\.?\)", re.IGNORECASE),
    re.compile(r"These resources address the diagnosis or management of [^.]*(\.|$)", re.IGNORECASE),
    re.compile(r"The Human Phenotype Ontology provides the following list of signs and symptoms[^:]*:", re.IGNORECASE),
]


@dataclass
class QARecord:
    """One question-answer pair with enough provenance to cite, split and dedupe it.

    ``group`` decides the split: all records of a group (a disease focus or a source document) land on the
    same side, so a test question never asks about a disease the adapter saw in training.
    """

    question: str
    answer: str
    source: str
    focus: str = ""
    group: str = ""
    qtype: str = ""
    url: str = ""
    doc_id: str = ""
    license: str = ""
    synonyms: list[str] = field(default_factory=list)
    cuis: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def split_group(self) -> str:
        return normalise(self.group or self.focus or self.doc_id or self.question)

    def dedupe_key(self) -> tuple[str, str]:
        return normalise(self.question), normalise(self.answer)

    def to_json(self) -> dict[str, Any]:
        """The on-disk JSONL shape: the original note's ``input``/``output`` plus provenance."""
        data = asdict(self)
        data["input"] = data.pop("question")
        data["output"] = data.pop("answer")
        return {k: v for k, v in data.items() if v not in ("", [], {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QARecord:
        data = dict(data)
        data["question"] = data.pop("input")
        data["answer"] = data.pop("output")
        known = set(cls.__dataclass_fields__)
        extra = {k: data.pop(k) for k in list(data) if k not in known}
        record = cls(**data)
        record.metadata.update(extra)
        return record


def clean_text(text: str) -> str:
    """Unescape HTML entities, strip tags and source boilerplate, normalise unicode and whitespace."""
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = unicodedata.normalize("NFC", text)
    for pattern in _BOILERPLATE:
        text = pattern.sub(" ", text)
    return _WS.sub(" ", text).strip()


def normalise(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive key for dedupe and grouping."""
    text = unicodedata.normalize("NFKD", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return _WS.sub(" ", text).strip()


def snippet(text: str) -> str:
    """The first ~500 characters of a source, cut at a word: what a prompt shows of it."""
    text = clean_text(text)
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text[:SNIPPET_CHARS].rsplit(" ", 1)[0]
    return cut + " …"
