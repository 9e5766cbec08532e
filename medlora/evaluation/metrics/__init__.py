"""Pluggable metrics: each is a class with ``name``, ``label`` and ``compute``, registered by name.

Add a metric by subclassing :class:`Metric` in a module here and decorating it with :func:`register`;
``evaluation.metrics`` in config.yaml then selects it by name.
"""

from __future__ import annotations

from medlora.evaluation.metrics import (
    citations,  # noqa: F401  (citation_relevance, citation_coverage, ...)
    diagnostic,  # noqa: F401  (diagnostic_accuracy_mc, diagnostic_accuracy_free)
    facts,  # noqa: F401  (inheritance_accuracy, key_fact_recall)
    loops,  # noqa: F401  (looping_answers)
    terminology,  # noqa: F401  (terminology_recall, terminology_precision)
    text_overlap,  # noqa: F401  (registers bleu, rouge_l)
)
from medlora.evaluation.metrics.base import METRICS, EvalSample, Metric, get_metric, mean_or_none, register

ALL_METRICS = [
    "bleu", "rouge_l", "terminology_recall", "terminology_precision", "inheritance_accuracy", "key_fact_recall",
    "looping_answers", "diagnostic_accuracy_mc", "diagnostic_accuracy_free", "citation_relevance",
    "citation_coverage", "citations_invented",
]

__all__ = ["ALL_METRICS", "METRICS", "EvalSample", "Metric", "get_metric", "mean_or_none", "register"]
