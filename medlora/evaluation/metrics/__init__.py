"""Pluggable metrics: each is a class with ``name``, ``label`` and ``compute``, registered by name.

Add a metric by subclassing :class:`Metric` in a module here and decorating it with :func:`register`;
``evaluation.metrics`` in config.yaml then selects it by name.
"""

from __future__ import annotations

from medlora.evaluation.metrics.base import METRICS, EvalSample, Metric, get_metric, register
from medlora.evaluation.metrics import text_overlap  # noqa: F401  (registers bleu, rouge_l)

__all__ = ["METRICS", "EvalSample", "Metric", "get_metric", "register"]
