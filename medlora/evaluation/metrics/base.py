"""The metric interface and registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from medlora.data.records import QARecord
from medlora.errors import MedloraError


@dataclass
class EvalSample:
    """One evaluated question: the record, the generated answer, and anything a metric needs besides."""

    record: QARecord
    prediction: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.record.answer


class Metric:
    """A corpus-level score in [0, 1] (higher is better unless ``higher_is_better`` is False).

    ``task`` says which samples the metric scores: ``"qa"`` the held-out questions answered plainly,
    ``"vignette"`` the diagnostic vignettes, ``"cited"`` the questions answered with retrieved sources.
    ``display`` says how reports show it, like the original note: ``"score"`` (0.42), ``"percent"`` (45 %)
    or ``"count"``. ``compute`` returns ``None`` when nothing in ``samples`` can be scored (no vignettes, no
    reference terms, no citations...); reports then show "–" and the quality gate calls it "not measured".
    """

    name: ClassVar[str]
    label: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    task: ClassVar[str] = "qa"
    display: ClassVar[str] = "score"
    needs_vocabulary: ClassVar[bool] = False  # the evaluation then puts the specialty's vocabulary in extras

    def compute(self, samples: Sequence[EvalSample]) -> float | None:
        if not samples:
            return None
        return self.from_stats(self.stats(samples).sum(axis=0))

    def stats(self, samples: Sequence[EvalSample]) -> np.ndarray:
        """Additive per-sample statistics, one row per sample: what the paired bootstrap resamples.

        The default is ``[value, 1]`` for a scored sample and ``[0, 0]`` for one :meth:`value` cannot score, so
        :meth:`from_stats` gives the mean over scored samples.
        """
        rows = []
        for sample in samples:
            value = self.value(sample)
            rows.append((0.0, 0.0) if value is None else (float(value), 1.0))
        return np.array(rows, dtype=np.float64).reshape(len(rows), 2)

    def value(self, sample: EvalSample) -> float | None:
        """One sample's score (``None``: not scorable); metrics that are not means override :meth:`stats`."""
        raise NotImplementedError

    def from_stats(self, totals: np.ndarray) -> float | None:
        return float(totals[0] / totals[1]) if totals[1] else None


def mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    METRICS[cls.name] = cls
    return cls


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]()
    except KeyError:
        raise MedloraError(f"unknown metric '{name}'; available: {', '.join(sorted(METRICS))}") from None
