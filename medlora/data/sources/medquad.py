"""MedQuAD (Ben Abacha & Demner-Fushman, BMC Bioinformatics 2019), raw XML in its upstream layout.

One ``<Document>`` per file: ``source``/``url`` attributes, ``<Focus>``, UMLS CUIs, synonyms, and
``<QAPair>``s with a ``qtype``. Three MedlinePlus subsets carry questions without answers by design: those
pairs are counted (``MedquadStats.unanswered``) and skipped, never treated as errors.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from medlora.data.locations import downloaded_medquad_dir
from medlora.data.records import QARecord
from medlora.errors import DataFormatError

LICENSE = "CC BY 4.0"
ATTRIBUTION = (
    "MedQuAD: Ben Abacha A, Demner-Fushman D. A question-entailment approach to question answering. "
    "BMC Bioinformatics 2019;20:511. CC BY 4.0."
)
SUBSETS_WITHOUT_ANSWERS = ("10_MPlus_ADAM_QA", "11_MPlusDrugs_QA", "12_MPlusHerbsSupplements_QA")
_ROOT_TAGS = ("Document", "doc", "DiseaseFile")  # the upstream files use three root spellings


@dataclass
class MedquadDocument:
    doc_id: str
    source: str
    url: str
    focus: str
    synonyms: list[str]
    cuis: list[str]
    semantic_group: str
    path: Path
    pairs: list[tuple[str, str, str]]  # (qtype, question, answer)


@dataclass
class MedquadStats:
    documents: int = 0
    pairs: int = 0
    unanswered: int = 0
    unanswered_by_subset: Counter = field(default_factory=Counter)


def default_medquad_dir(repo_root: str | Path | None = None) -> Path | None:
    """``$MEDQUAD_DIR``, else ``../shared/data/medquad`` beside the repository, else the copy
    ``medlora data download medquad`` wrote, else ``None``."""
    env = os.environ.get("MEDQUAD_DIR")
    if env:
        return Path(env)
    root = Path(repo_root) if repo_root else Path.cwd()
    candidate = root.parent / "shared" / "data" / "medquad"
    if candidate.is_dir():
        return candidate
    return downloaded_medquad_dir()


def _text(element: ET.Element | None) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def _first(root: ET.Element, *tags: str) -> ET.Element | None:
    for tag in tags:
        found = root.find(f".//{tag}")
        if found is not None:
            return found
    return None


def _all_text(root: ET.Element, *tags: str) -> list[str]:
    return [_text(el) for tag in tags for el in root.iter(tag) if _text(el)]


def parse_document(path: Path) -> MedquadDocument:
    """Parse one file. A few upstream files use a lower-case variant schema (``<doc>``, ``<pair>``); both work.

    Parsed with defusedxml: entity declarations (the "billion laughs" expansion) and external entities are
    refused, so a crafted file cannot exhaust memory or read other files.
    """
    try:
        root = SafeET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataFormatError(f"{path}:{err.position[0]}", f"malformed XML: {err}", "is this a MedQuAD file?") from None
    except DefusedXmlException as err:
        raise DataFormatError(str(path), f"refused unsafe XML ({type(err).__name__}: {err})",
                              "MedQuAD files declare no entities or DTDs") from None
    except (OSError, ValueError) as err:
        raise DataFormatError(str(path), f"cannot read the file: {err}") from None
    if root.tag not in _ROOT_TAGS:
        raise DataFormatError(str(path), f"root element is <{root.tag}>, expected <Document>")
    if _first(root, "Focus", "doctitle-focus") is None:
        raise DataFormatError(str(path), "document has no <Focus> element")
    # A handful of upstream documents have an empty focus; they are still valid (grouped by document).
    focus = _text(_first(root, "Focus", "doctitle-focus"))
    pairs = []
    for pair in [*root.iter("QAPair"), *root.iter("pair")]:
        question_el = _first(pair, "Question", "question")
        if question_el is None:
            raise DataFormatError(str(path), f"QAPair {pair.get('pid')} has no <Question>")
        pairs.append((question_el.get("qtype", ""), _text(question_el), _text(_first(pair, "Answer", "answer"))))
    return MedquadDocument(
        doc_id=root.get("id") or root.get("docid") or root.get("fid") or path.stem,
        source=root.get("source") or root.get("corpus") or "",
        url=root.get("url", ""),
        focus=focus,
        synonyms=_all_text(root, "Synonym"),
        cuis=_all_text(root, "CUI", "cui"),
        semantic_group=_text(_first(root, "SemanticGroup", "semanticGroup")),
        path=path,
        pairs=pairs,
    )


def iter_documents(
    directory: str | Path, *, errors: list[DataFormatError] | None = None
) -> Iterator[MedquadDocument]:
    """Every document of every subset, in a stable order."""
    directory = Path(directory)
    files = sorted(directory.glob("*/*.xml"))
    if not files:
        raise DataFormatError(str(directory), "no MedQuAD XML files found", "expected <dir>/<subset>/<id>.xml")
    for path in files:
        try:
            yield parse_document(path)
        except DataFormatError as err:
            if errors is None:
                raise
            errors.append(err)


def document_records(doc: MedquadDocument, stats: MedquadStats | None = None) -> Iterator[QARecord]:
    """The answered pairs of one document as records; unanswered ones only counted."""
    subset = doc.path.parent.name
    if stats is not None:
        stats.documents += 1
    for index, (qtype, question, answer) in enumerate(doc.pairs, start=1):
        if not answer:
            if stats is not None:
                stats.unanswered += 1
                stats.unanswered_by_subset[subset] += 1
            continue
        if stats is not None:
            stats.pairs += 1
        yield QARecord(
            question=question,
            answer=answer,
            source=f"medquad/{subset}",
            focus=doc.focus,
            group=doc.focus or f"{subset}/{doc.doc_id}",
            qtype=qtype,
            url=doc.url,
            doc_id=f"{doc.doc_id}-{index}",
            license=LICENSE,
            synonyms=list(doc.synonyms),
            cuis=list(doc.cuis),
        )
