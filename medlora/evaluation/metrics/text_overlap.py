"""BLEU (sacrebleu) and ROUGE-L (rouge-score), reported on a 0–1 scale like the original note."""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
from rouge_score import rouge_scorer

from medlora.evaluation.metrics.base import EvalSample, Metric, register


@register
class Bleu(Metric):
    """Corpus BLEU with sacrebleu's standard 13a tokenisation, divided by 100."""

    name = "bleu"
    label = "BLEU"

    def compute(self, samples: Sequence[EvalSample]) -> float | None:
        if not samples:
            return None
        hypotheses = [s.prediction for s in samples]
        references = [[s.reference for s in samples]]
        return sacrebleu.corpus_bleu(hypotheses, references).score / 100.0


@register
class RougeL(Metric):
    """Mean ROUGE-L F-measure over answers (Porter stemming)."""

    name = "rouge_l"
    label = "ROUGE-L"

    def __init__(self) -> None:
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def compute(self, samples: Sequence[EvalSample]) -> float | None:
        if not samples:
            return None
        scores = [self._scorer.score(s.reference, s.prediction)["rougeL"].fmeasure for s in samples]
        return sum(scores) / len(scores)
