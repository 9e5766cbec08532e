"""Looping answers: the share of answers that repeat a sentence or a long word n-gram.

A looping answer ("Melanoma is a type of skin cancer that develops in the skin." eleven times) is useless
however well it overlaps the reference, so it is counted on its own and reported for every variant.
"""

from __future__ import annotations

import re

from medlora.data.records import normalise
from medlora.evaluation.metrics.base import EvalSample, Metric, register

LOOP_WORD_NGRAM = 8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def is_looping(text: str, n: int = LOOP_WORD_NGRAM) -> bool:
    """A sentence of at least four words said twice, or any ``n`` consecutive words said twice."""
    sentences = [normalise(s) for s in _SENTENCE.split(text)]
    sentences = [s for s in sentences if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        return True
    words = normalise(text).split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


@register
class LoopingAnswers(Metric):
    """Share of answers that loop (lower is better)."""

    name = "looping_answers"
    label = "Looping answers"
    display = "percent"
    higher_is_better = False

    def value(self, sample: EvalSample) -> float | None:
        return float(is_looping(sample.prediction))
