"""Facts, checked without a judge model: inheritance patterns and the team-written sets' key facts.

Overlap scores reward an answer that sounds like the reference; these check that it says the same thing.

- ``inheritance_accuracy`` — for "Is X inherited?"-type questions whose reference names an inheritance
  pattern (autosomal dominant / recessive, X-linked, Y-linked, mitochondrial, multifactorial, or "not
  inherited"), the answer is right when it names at least one of the reference's patterns and none that the
  reference does not allow. An answer that names no pattern is wrong: it did not answer.
- ``key_fact_recall`` — records may carry ``key_facts`` (thresholds, first-line drugs) in their metadata; the
  share of them an answer states, matched case-, accent- and punctuation-insensitively.
"""

from __future__ import annotations

from medlora.data.inheritance import asks_inheritance, inheritance_patterns
from medlora.data.records import QARecord, normalise
from medlora.evaluation.metrics.base import EvalSample, Metric, register


def _allowed(reference: set[str]) -> set[str]:
    allowed = set(reference)
    if reference & {"x-linked dominant", "x-linked recessive"}:
        allowed.add("x-linked")
    if "x-linked" in reference:
        allowed |= {"x-linked dominant", "x-linked recessive"}
    return allowed


def is_inheritance_question(record: QARecord) -> bool:
    return record.qtype == "inheritance" or asks_inheritance(record.question)


def inheritance_correct(record: QARecord, prediction: str) -> bool | None:
    """``None`` when the question is not about inheritance or its reference names no pattern."""
    if not is_inheritance_question(record):
        return None
    reference = inheritance_patterns(record.answer)
    if not reference:
        return None
    stated = inheritance_patterns(prediction)
    return bool(stated & _allowed(reference)) and stated <= _allowed(reference)


@register
class InheritanceAccuracy(Metric):
    """Share of inheritance questions whose answer states the reference's pattern and no other."""

    name = "inheritance_accuracy"
    label = "Inheritance pattern correct"
    display = "percent"

    def value(self, sample: EvalSample) -> float | None:
        correct = inheritance_correct(sample.record, sample.prediction)
        return None if correct is None else float(correct)


@register
class KeyFactRecall(Metric):
    """Mean share of a record's ``key_facts`` that the answer states (records without key facts skipped)."""

    name = "key_fact_recall"
    label = "Key facts stated"
    display = "percent"

    def value(self, sample: EvalSample) -> float | None:
        facts = [f for f in sample.record.metadata.get("key_facts") or [] if isinstance(f, str) and f.strip()]
        if not facts:
            return None
        answer = f" {normalise(sample.prediction)} "
        return sum(f" {normalise(f)} " in answer for f in facts) / len(facts)
