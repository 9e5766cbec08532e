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
    """A corpus-level score in [0, 1] (higher is better unless ``higher_is_better`` is False)."""

    name: ClassVar[str]
    label: ClassVar[str]
    higher_is_better: ClassVar[bool] = True

    def compute(self, samples: Sequence[EvalSample]) -> float:
        raise NotImplementedError


METRICS: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    METRICS[cls.name] = cls
    return cls


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]()
    except KeyError:
        raise MedloraError(f"unknown metric '{name}'; available: {', '.join(sorted(METRICS))}") from None
