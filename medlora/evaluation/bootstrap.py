"""Paired bootstrap confidence intervals for base→adapter deltas.

Base and adapter answer the same questions, so the right interval resamples *questions* and recomputes both
scores on the same resample (Koehn 2004; Dror et al. 2018). Each metric exposes additive per-sample statistics
(:meth:`Metric.stats`), so a resample is a sum of rows and a corpus metric such as BLEU is recomputed exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medlora.evaluation.metrics.base import EvalSample, Metric

RESAMPLES = 1000


@dataclass(frozen=True)
class Delta:
    """``adapter − base`` with its percentile interval; ``n`` questions resampled."""

    delta: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return {"delta": self.delta, "low": self.low, "high": self.high, "n": self.n}


def paired_bootstrap(
    metric: Metric,
    base: Sequence[EvalSample],
    adapter: Sequence[EvalSample],
    *,
    resamples: int = RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> Delta | None:
    """The delta and its ``confidence`` interval; ``None`` when either side cannot be scored."""
    if len(base) != len(adapter):
        raise ValueError("paired bootstrap needs the same questions on both sides")
    base_value, adapter_value = metric.compute(base), metric.compute(adapter)
    if base_value is None or adapter_value is None:
        return None
    base_stats, adapter_stats = metric.stats(base), metric.stats(adapter)
    rng = np.random.default_rng(seed)
    n = len(base)
    indices = rng.integers(0, n, size=(resamples, n))
    deltas = []
    for row in indices:
        b = metric.from_stats(base_stats[row].sum(axis=0))
        a = metric.from_stats(adapter_stats[row].sum(axis=0))
        if a is not None and b is not None:
            deltas.append(a - b)
    if not deltas:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.array(deltas), [tail, 1 - tail])
    return Delta(adapter_value - base_value, float(low), float(high), n)
