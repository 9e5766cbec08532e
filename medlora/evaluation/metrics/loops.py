"""Looping answers: the share of answers that repeat a sentence or a long word n-gram.

A looping answer ("Melanoma is a type of skin cancer that develops in the skin." eleven times) is useless
however well it overlaps the reference, so it is counted on its own and reported for every variant.
"""

from __future__ import annotations

from medlora.evaluation.metrics.base import EvalSample, Metric, register
from medlora.models.loops import is_looping


@register
class LoopingAnswers(Metric):
    """Share of answers that loop (lower is better)."""

    name = "looping_answers"
    label = "Looping answers"
    display = "percent"
    higher_is_better = False

    def value(self, sample: EvalSample) -> float | None:
        return float(is_looping(sample.prediction))
