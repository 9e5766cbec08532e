"""Language match: the share of answers written in the language of their question.

A French clinician asking in French should be answered in French; a model that answers in English (or loops
in a mix) fails this metric however good its content. The language of both sides comes from a registry
identifier (:func:`medlora.data.language.detect_language`, py3langid). An answer with no letters counts as a
mismatch. ``language_match`` scores every question; ``language_match_en`` and ``language_match_fr`` only the
questions written in that language ("–" when there are none), so a report shows the figure per language.
"""

from __future__ import annotations

from medlora.data.language import detect_language
from medlora.evaluation.metrics.base import EvalSample, Metric, register


def question_language(sample: EvalSample) -> str:
    """The language a question is written in: the record's declared ``language`` when it has one (built-in
    sets carry it), else what the identifier says."""
    declared = sample.record.metadata.get("language") if sample.record.metadata else None
    return str(declared) if declared else detect_language(sample.record.question)


def language_matches(sample: EvalSample) -> bool:
    return detect_language(sample.prediction) == question_language(sample)


class _LanguageMatch(Metric):
    display = "percent"
    language: str | None = None  # None: every question

    def value(self, sample: EvalSample) -> float | None:
        if self.language is not None and question_language(sample) != self.language:
            return None
        return 1.0 if language_matches(sample) else 0.0


@register
class LanguageMatch(_LanguageMatch):
    name = "language_match"
    label = "Answers in the question's language"


@register
class LanguageMatchEnglish(_LanguageMatch):
    name = "language_match_en"
    label = "Answers in the question's language (English questions)"
    language = "en"


@register
class LanguageMatchFrench(_LanguageMatch):
    name = "language_match_fr"
    label = "Answers in the question's language (French questions)"
    language = "fr"
