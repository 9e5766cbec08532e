"""Citation relevance of answers generated with retrieved sources in the prompt.

Samples have ``task = "cited"``: ``extras["retrieved"]`` is the list of sources the prompt numbered
``[1]..[k]`` (objects or dicts with ``focus`` and ``cuis``); ``record.focus``, ``record.synonyms`` and
``record.cuis`` describe the question. A citation ``[n]`` is

- *invented* when ``n`` is not one of the numbered sources,
- *relevant* when the cited source is about the question's condition, a subtype of it or its parent
  (:func:`medlora.retrieval.relevance.about_condition`: names after normalisation, synonyms, UMLS CUIs).

Citations are read by :func:`medlora.citations.parse_citations` (the grammar) and counted once per answer
(``[1] ... [1]`` is one citation of source 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medlora.citations import parse_citations
from medlora.evaluation.metrics.base import EvalSample, Metric, register
from medlora.retrieval.relevance import about_condition

def is_relevant(source: Any, focus: str, synonyms: Sequence[str], cuis: Sequence[str]) -> bool:
    return about_condition(source, focus, synonyms, cuis)


@dataclass(frozen=True)
class CitationJudgement:
    cited: int  # distinct citations in the answer
    relevant: int
    invented: int


def judge(sample: EvalSample) -> CitationJudgement:
    retrieved = list(sample.extras.get("retrieved", []))
    cited = parse_citations(sample.prediction)
    relevant = invented = 0
    for number in cited:
        if not 1 <= number <= len(retrieved):
            invented += 1
        elif is_relevant(retrieved[number - 1], sample.record.focus, sample.record.synonyms, sample.record.cuis):
            relevant += 1
    return CitationJudgement(len(cited), relevant, invented)


@register
class CitationRelevance(Metric):
    """Relevant citations / all citations (invented ones count as not relevant); None without citations."""

    name = "citation_relevance"
    label = "Relevant citations"
    display = "percent"
    task = "cited"

    def stats(self, samples: Sequence[EvalSample]) -> np.ndarray:
        return np.array([(j.relevant, j.cited) for j in map(judge, samples)], dtype=np.float64).reshape(-1, 2)


@register
class CitationCoverage(Metric):
    """Share of answers that cite at least one source."""

    name = "citation_coverage"
    label = "Answers citing ≥1 source"
    display = "percent"
    task = "cited"

    def value(self, sample: EvalSample) -> float | None:
        return float(judge(sample).cited > 0)


@register
class InventedCitations(Metric):
    """Number of citations ``[n]`` whose ``n`` was not among the sources in the prompt."""

    name = "citations_invented"
    label = "Invented citations (count)"
    display = "count"
    task = "cited"
    higher_is_better = False

    def stats(self, samples: Sequence[EvalSample]) -> np.ndarray:
        return np.array([(judge(s).invented, 1.0) for s in samples], dtype=np.float64).reshape(-1, 2)

    def from_stats(self, totals: np.ndarray) -> float | None:
        return float(totals[0]) if totals[1] else None
