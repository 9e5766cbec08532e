"""Medical Abstracts (Schopf, Braun & Matthes, NLPIR 2022), CSV ``condition_label,medical_abstract``.

The original note turned abstracts into QA pairs by keyword, echoing the abstract in the question. Here the
question is one a clinician would ask about the study's topic, and the answer is what the study concluded
(its closing sentences), so the model learns to state findings rather than copy its prompt.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medlora.data.locations import downloaded_abstracts_csv
from medlora.data.records import QARecord, clean_text
from medlora.errors import DataFormatError
from medlora.specialties import Specialty

LICENSE = "CC BY-SA 3.0"
ATTRIBUTION = (
    "Medical Abstracts: Schopf T, Braun D, Matthes F. Evaluating Unsupervised Text Classification: Zero-Shot "
    "and Similarity-Based Approaches. NLPIR 2022. CC BY-SA 3.0."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CONCLUSION_CUES = re.compile(
    r"^(in conclusion|we conclude|these (results|findings|data)|our (results|findings|data)|this study|"
    r"thus|therefore|overall|taken together)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Abstract:
    row: int
    label: int
    condition: str
    title: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.title} {self.body}"


def default_abstracts_csv(repo_root: str | Path | None = None) -> Path | None:
    env = os.environ.get("MEDICAL_ABSTRACTS_CSV")
    if env:
        return Path(env)
    root = Path(repo_root) if repo_root else Path.cwd()
    candidate = root.parent / "shared" / "data" / "medical_abstracts" / "medical_tc_test.csv"
    if candidate.is_file():
        return candidate
    return downloaded_abstracts_csv()  # `medlora data download abstracts`


def _labels(csv_path: Path) -> dict[int, str]:
    labels_path = csv_path.with_name("medical_tc_labels.csv")
    if not labels_path.is_file():
        return {}
    with labels_path.open(encoding="utf-8", newline="") as handle:
        return {int(row["condition_label"]): row["condition_name"] for row in csv.DictReader(handle)}


_FIX = "each row must be condition_label (an integer),medical_abstract (text) in UTF-8"


def iter_abstracts(csv_path: str | Path, *, errors: list[DataFormatError] | None = None) -> Iterator[Abstract]:
    """Yield the abstracts of a ``condition_label,medical_abstract`` CSV.

    A malformed row raises :class:`DataFormatError` naming ``file:line`` (the line the row starts on); with
    ``errors`` given (``--skip-invalid``) it is appended there and skipped. Problems of the whole file (not
    found, no header, wrong columns, broken CSV quoting) always raise.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataFormatError(str(csv_path), "file not found")
    labels = _labels(csv_path)

    def handle_row(err: DataFormatError) -> None:
        if errors is None:
            raise err
        errors.append(err)

    # surrogateescape: a row with invalid UTF-8 becomes one row error (skippable), not a crash of the reader.
    with csv_path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            fieldnames = reader.fieldnames or []
        except csv.Error as err:
            raise DataFormatError(f"{csv_path}:1", f"malformed CSV header: {err}", _FIX) from None
        missing = {"condition_label", "medical_abstract"} - set(fieldnames)
        if missing:
            raise DataFormatError(
                f"{csv_path}:1", f"missing column(s) {sorted(missing)}", "expected condition_label,medical_abstract"
            )
        while True:
            row_number = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # unbalanced quotes, NUL bytes, a field beyond the CSV size limit
                raise DataFormatError(f"{csv_path}:{row_number}", f"malformed CSV: {err}", _FIX) from None
            try:
                yield _abstract(row, row_number, labels, f"{csv_path}:{row_number}")
            except DataFormatError as err:
                handle_row(err)


def _abstract(row: dict[str | None, str | None], row_number: int, labels: dict[int, str], location: str) -> Abstract:
    values = [v for v in row.values() if isinstance(v, str)]
    if any(_has_surrogates(v) for v in values):
        raise DataFormatError(location, "not valid UTF-8 text", _FIX)
    raw_label = row.get("condition_label")
    try:
        label = int(raw_label or "")
    except ValueError:
        raise DataFormatError(location, f"condition_label {raw_label!r} is not an integer", _FIX) from None
    text = clean_text(row.get("medical_abstract") or "")
    if not text:
        raise DataFormatError(location, "empty medical_abstract", _FIX)
    title, _, body = text.partition(". ")
    return Abstract(row_number, label, labels.get(label, str(label)), title.strip(), body.strip())


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def conclusion(body: str, max_sentences: int = 3) -> str:
    """The sentences that state what the study found: explicit conclusion cues, else the last sentences."""
    sentences = [s.strip() for s in _SENTENCE.split(body) if s.strip()]
    cued = [i for i, s in enumerate(sentences) if _CONCLUSION_CUES.match(s)]
    start = cued[0] if cued else max(0, len(sentences) - 2)
    return " ".join(sentences[start : start + max_sentences])


def _question(term: str, title: str) -> str:
    lowered = title.lower()
    if any(w in lowered for w in ("treatment", "therapy", "trial", "versus", "efficacy")):
        return f"What does clinical research show about treatment outcomes in {term}, as in '{title}'?"
    if any(w in lowered for w in ("risk", "incidence", "prevalence", "epidemiolog")):
        return f"What is known about risk factors and frequency of {term}, according to the study '{title}'?"
    if any(w in lowered for w in ("diagnos", "detection", "imaging", "marker")):
        return f"How can {term} be diagnosed, based on the study '{title}'?"
    return f"What did the study '{title}' find about {term}?"


def abstract_records(abstracts: Iterator[Abstract], specialty: Specialty, source: str) -> Iterator[QARecord]:
    """One QA pair per abstract that mentions a specialty term in its title or body."""
    for abstract in abstracts:
        terms = specialty.matching_terms(abstract.title, abstract.body)
        if not terms:
            continue
        answer = conclusion(abstract.body)
        if not answer:
            continue
        yield QARecord(
            question=_question(terms[0], abstract.title),
            answer=answer,
            source=source,
            focus=terms[0],
            group=f"abstract-{abstract.row}",
            qtype="research",
            doc_id=f"abstract-{abstract.row}",
            license=LICENSE,
            metadata={"condition": abstract.condition, "title": abstract.title, "matched_terms": terms},
        )
