"""Medical terminology: recall of the reference answer's specialty terms, and precision of clinical words.

Both need a :class:`~medlora.evaluation.vocabulary.Vocabulary` in ``sample.extras["vocabulary"]`` (the
evaluation puts the specialty's cached vocabulary there). See ``docs/EVALUATION.md``.
"""

from __future__ import annotations

from medlora.errors import MedloraError
from medlora.evaluation.metrics.base import EvalSample, Metric, register
from medlora.evaluation.vocabulary import Vocabulary


def _vocabulary(sample: EvalSample) -> Vocabulary:
    vocabulary = sample.extras.get("vocabulary")
    if not isinstance(vocabulary, Vocabulary):
        raise MedloraError("terminology metrics need sample.extras['vocabulary'] (a Vocabulary)")
    return vocabulary


def term_recall(vocabulary: Vocabulary, reference: str, prediction: str) -> float | None:
    """Share of the reference's distinct specialty terms that the prediction also uses (None: no terms)."""
    wanted = vocabulary.specialty_terms_in(reference)
    if not wanted:
        return None
    return len(wanted & vocabulary.specialty_terms_in(prediction)) / len(wanted)


def term_precision(vocabulary: Vocabulary, prediction: str) -> float | None:
    """Share of the prediction's distinct clinical-looking words that belong to a vocabulary term."""
    real, unknown = vocabulary.clinical_words(prediction)
    if not real and not unknown:
        return None
    return len(real) / (len(real) + len(unknown))


@register
class TerminologyRecall(Metric):
    """Mean over answers whose reference holds at least one specialty term."""

    name = "terminology_recall"
    label = "Medical terminology (recall)"
    display = "percent"
    needs_vocabulary = True

    def value(self, sample: EvalSample) -> float | None:
        return term_recall(_vocabulary(sample), sample.reference, sample.prediction)


@register
class TerminologyPrecision(Metric):
    """Mean over answers with at least one clinical-looking word."""

    name = "terminology_precision"
    label = "Medical terminology (precision)"
    display = "percent"
    needs_vocabulary = True

    def value(self, sample: EvalSample) -> float | None:
        return term_precision(_vocabulary(sample), sample.prediction)
