"""BLEU (sacrebleu) and ROUGE-L (rouge-score), reported on a 0–1 scale like the original note."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from medlora.evaluation.metrics.base import EvalSample, Metric, register


@register
class Bleu(Metric):
    """Corpus BLEU with sacrebleu's standard 13a tokenisation, divided by 100.

    Per-sample statistics are BLEU's sufficient statistics (n-gram matches and totals, lengths), so a
    bootstrap resample recomputes a true corpus BLEU rather than averaging sentence scores.
    """

    name = "bleu"
    label = "BLEU"

    def __init__(self) -> None:
        self._bleu = BLEU()

    def stats(self, samples: Sequence[EvalSample]) -> np.ndarray:
        rows = []
        for s in samples:
            score = self._bleu.corpus_score([s.prediction], [[s.reference]])
            rows.append([*score.counts, *score.totals, score.sys_len, score.ref_len])
        return np.array(rows, dtype=np.float64).reshape(len(rows), 10)

    def from_stats(self, totals: np.ndarray) -> float | None:
        counts, total = [int(x) for x in totals[:4]], [int(x) for x in totals[4:8]]
        return BLEU.compute_bleu(counts, total, int(totals[8]), int(totals[9])).score / 100.0


@register
class RougeL(Metric):
    """Mean ROUGE-L F-measure over answers (Porter stemming)."""

    name = "rouge_l"
    label = "ROUGE-L"

    def __init__(self) -> None:
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def value(self, sample: EvalSample) -> float | None:
        return self._scorer.score(sample.reference, sample.prediction)["rougeL"].fmeasure
