"""The metric interface and registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
        raise NotImplementedError


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
