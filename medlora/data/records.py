"""The one record type every source is turned into, and the cleaning every record gets."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

_WS = re.compile(r"\s+")
# What a prompt shows of one source. 200, not 500: a grounded training row (max length 320, two thirds of it
# for the prompt) fits its three sources by cutting each to a median 150 characters, so 500-character sources
# at inference were a prompt the adapter never trained on — and open-book prefill was most of the evaluation's
# time. Chosen on the validation split (docs/RESULTS.md, round 6).
SNIPPET_CHARS = 200
_TAG = re.compile(r"<[^>]{1,200}>")
# Page templates that NIH answers carry and that a model must not learn to recite: in a MedQuAD "symptoms"
# answer the Human Phenotype Ontology frame is most of the text, and NCI pages repeat the same clinical-trial
# paragraph. An adapter that learns them gains BLEU/ROUGE and no medicine, so they are stripped from training
# targets, references and retrieved passages alike (tested in tests/test_templates.py).
_BOILERPLATE = [
    re.compile(r"^\s*Key Points\s*[-–]?\s*", re.IGNORECASE),
    re.compile(r"\(This list may not be complete\.?\)", re.IGNORECASE),
    re.compile(r"These resources address the diagnosis or management of [^.]*(\.|$)", re.IGNORECASE),
    re.compile(r"The Human Phenotype Ontology provides the following list of signs and symptoms for[^.:]*[.:]",
               re.IGNORECASE),
    re.compile(r"If the information is available, the table below includes how often the symptom is seen in "
               r"people with this condition\.", re.IGNORECASE),
    re.compile(r"You can use the MedlinePlus Medical Dictionary to look up the definitions for these medical "
               r"terms\.", re.IGNORECASE),
    re.compile(r"Signs and Symptoms Approximate number of patients \(when available\)", re.IGNORECASE),
    re.compile(r"The Human Phenotype Ontology \(HPO\) has collected information on how often a sign or symptom "
               r"occurs in a condition\..*?(?:the sign or symptom may be rare or common\.|$)",
               re.IGNORECASE | re.DOTALL),
    # NCI PDQ clinical-trial boilerplate (the same sentences under every cancer).
    re.compile(r"(?:Patients may want to think about taking part in a clinical trial\.|"
               r"For some patients, taking part in a clinical trial may be the best treatment choice\.|"
               r"Clinical trials are part of the cancer research process\.|"
               r"Clinical trials are done to find out if new cancer treatments are safe and effective or better "
               r"than the standard treatment\.|"
               r"Many of today's standard treatments for cancer are based on earlier clinical trials\.|"
               r"Patients who take part in a clinical trial may receive the standard treatment or be among the "
               r"first to receive a new treatment\.|"
               r"Patients who take part in clinical trials also help improve the way cancer will be treated in "
               r"the future\.|"
               r"Even when clinical trials do not lead to effective new treatments, they often answer important "
               r"questions and help move research forward\.|"
               r"Some clinical trials only include patients who have not yet received treatment\.|"
               r"Other trials test treatments for patients whose cancer has not gotten better\.|"
               r"There are also clinical trials that test new ways to stop cancer from recurring \(coming back\) "
               r"or reduce the side effects of cancer treatment\.|"
               r"Clinical trials are taking place in many parts of the country\.|"
               r"See the Treatment Options section that follows for links to current treatment clinical trials\.|"
               r"Patients can enter clinical trials before, during, or after starting their cancer treatment\.|"
               r"These have been retrieved from NCI's listing of clinical trials\.|"
               r"General information about clinical trials is available from the NCI website\.|"
               r"Information about clinical trials is available from the NCI website\.|"
               r"Talk with your doctor about clinical trials that may be right for you\.|"
               r"For more specific results, refine the search by using other search features, such as the "
               r"location of the trial, the type of treatment, or the name of the drug\.)",
               re.IGNORECASE),
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


# An answer that opens by repeating a templated question ("What are the signs and symptoms of X? ...").
_ECHOED_QUESTION = re.compile(r"^\s*What (?:are|is) the (?:signs and )?symptoms of [^?]{1,200}\?\s*", re.IGNORECASE)


def clean_answer(text: str) -> str:
    """:func:`clean_text` plus the answer-only templates (an echoed question): for targets and references."""
    return _ECHOED_QUESTION.sub("", clean_text(text))


def normalise(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive key for dedupe and grouping."""
    text = unicodedata.normalize("NFKD", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return _WS.sub(" ", text).strip()


def snippet(text: str) -> str:
    """The first ``SNIPPET_CHARS`` characters of a source, cut at a word: what a prompt shows of it."""
    text = clean_answer(text)
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text[:SNIPPET_CHARS].rsplit(" ", 1)[0]
    return cut + " …"
