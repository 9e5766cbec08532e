"""Diagnostic accuracy on vignettes: multiple choice (log-likelihood, ``acc_norm``) and free text.

Samples are vignettes (``task = "vignette"``): ``record.question`` is the vignette, ``record.focus`` and
``record.synonyms`` the accepted names, ``prediction`` the generated free-text answer, and
``extras["choice"]`` / ``extras["answer_index"]`` the option the model ranked first and the gold option.
"""

from __future__ import annotations

from medlora.evaluation.metrics.base import EvalSample, Metric, register
from medlora.evaluation.vignettes import mentions_any, names_of


def free_text_correct(sample: EvalSample) -> bool:
    """The answer names the gold disease: its focus or a synonym, as a whole word sequence."""
    return mentions_any(sample.prediction, names_of(sample.record.focus, sample.record.synonyms))


@register
class DiagnosticMultipleChoice(Metric):
    """Share of vignettes whose highest length-normalised log-likelihood option is the gold diagnosis."""

    name = "diagnostic_accuracy_mc"
    label = "Diagnostic accuracy (multiple choice)"
    display = "percent"
    task = "vignette"

    def value(self, sample: EvalSample) -> float | None:
        if sample.extras.get("choice") is None or sample.extras.get("answer_index", -1) < 0:
            return None
        return float(sample.extras["choice"] == sample.extras["answer_index"])


@register
class DiagnosticFreeText(Metric):
    """Share of vignettes whose generated answer names the gold diagnosis (focus or synonym)."""

    name = "diagnostic_accuracy_free"
    label = "Diagnostic accuracy (free text)"
    display = "percent"
    task = "vignette"

    def value(self, sample: EvalSample) -> float | None:
        return float(free_text_correct(sample))
