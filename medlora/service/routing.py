"""``adapter="auto"``: pick the specialty adapter from the question text.

Why TF-IDF + logistic regression: it trains in milliseconds on the adapters' own training questions, needs no
GPU or extra model, and gives calibrated-enough probabilities to say "not sure" — below
``service.routing_threshold`` the question goes to the base model, which is the safe default for a question
no adapter was trained for. Word n-grams catch clinical terms; character n-grams catch their morphology
(``dermatitis``/``dermatologic``), which matters with a few hundred training questions.

Questions of built-in specialties that have no loaded adapter become a ``base`` class, so with a single adapter
the router still learns what is *not* its specialty.

Language variants: a specialty's built-in sets in other languages (``dermatology-fr``) teach its adapter's class
too, so a French dermatology question reaches the dermatology adapter — unless an adapter trained for the
variant itself is loaded, which then gets those questions instead. A French question is also read with the
English terms of the French→English term map added (the retrieval's query expansion), so French questions of a
specialty with English questions only can reach it ("Comment traiter une fibrillation atriale ?" → cardiology).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medlora.data.records import QARecord
from medlora.errors import MedloraError
from medlora.retrieval.translate import expand_query
from medlora.specialties import (
    builtin_sets,
    english_builtin_specialties,
    language_variants,
    read_term_file,
    specialties,
    split_variant,
)

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

BASE_LABEL = "__base__"


@dataclass(frozen=True)
class RouteDecision:
    """Where a question goes: ``adapter`` is ``None`` for the base model."""

    adapter: str | None
    probability: float
    probabilities: dict[str, float] = field(default_factory=dict)


def _pipeline(seed: int) -> Pipeline:
    # scikit-learn (with SciPy) takes seconds to import: only a router that is trained needs it, so
    # `medlora serve` reaches /health without it.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode", min_df=1)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                  strip_accents="unicode", min_df=1)),
    ])
    classifier = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced", random_state=seed)
    return Pipeline([("features", features), ("classifier", classifier)])


class SpecialtyRouter:
    """A question classifier over adapter names (plus :data:`BASE_LABEL`) with a confidence threshold."""

    def __init__(self, pipeline: Pipeline | None, labels: Sequence[str], threshold: float) -> None:
        self._pipeline = pipeline
        self.labels = list(labels)
        self.threshold = threshold

    @classmethod
    def fit(cls, questions: Sequence[str], labels: Sequence[str], threshold: float = 0.6,
            seed: int = 0) -> SpecialtyRouter:
        """Train on ``questions`` labelled with adapter names (or :data:`BASE_LABEL`)."""
        if len(questions) != len(labels):
            raise ValueError("questions and labels differ in length")
        classes = sorted(set(labels))
        if not classes:
            raise MedloraError("cannot train the router on no questions")
        if len(classes) == 1:
            # Nothing to tell apart: every question goes to the one class, with full confidence.
            return cls(None, classes, threshold)
        pipeline = _pipeline(seed)
        pipeline.fit([expand_query(q) for q in questions], list(labels))
        return cls(pipeline, [str(c) for c in pipeline.classes_], threshold)

    @property
    def adapters(self) -> list[str]:
        return [label for label in self.labels if label != BASE_LABEL]

    def route_many(self, questions: Sequence[str]) -> list[RouteDecision]:
        if not questions:
            return []
        if self._pipeline is None:
            only = self.labels[0]
            return [RouteDecision(None if only == BASE_LABEL else only, 1.0, {only: 1.0}) for _ in questions]
        decisions = []
        # A French question is read with the English terms of the team's term map added (the retrieval's
        # query expansion): most specialties have English training questions only.
        for row in self._pipeline.predict_proba([expand_query(q) for q in questions]):
            probabilities = {label: float(p) for label, p in zip(self.labels, row, strict=True)}
            best = max(probabilities, key=probabilities.__getitem__)
            chosen = best if probabilities[best] >= self.threshold and best != BASE_LABEL else None
            decisions.append(RouteDecision(chosen, probabilities[best], probabilities))
        return decisions

    def route(self, question: str) -> RouteDecision:
        return self.route_many([question])[0]


def builtin_specialties() -> list[str]:
    """Specialties that ship an English built-in QA set (``medlora/specialties/<name>/qa.jsonl``), from the
    package's specialty registry."""
    return english_builtin_specialties()


def builtin_records(specialty: str) -> list[QARecord]:
    """The built-in QA set of ``specialty`` or of a language variant (``dermatology-fr``), or ``[]``."""
    from medlora.data.prepare import BUILTIN_LICENSE, builtin_dataset_path
    from medlora.data.sources.json_pairs import iter_json_pairs

    if specialty not in builtin_sets():
        return []
    return list(iter_json_pairs(builtin_dataset_path(specialty), source=f"builtin/{specialty}",
                                license=BUILTIN_LICENSE))


def specialty_vocabulary(specialty: str) -> list[str]:
    """The term list (which selected its training data) and clinical lexicon of the specialty, or of the
    specialty a language variant belongs to.

    Each term is a tiny training document: a few hundred questions cannot mention every disease of a
    specialty, its term list does, and it lifts held-out routing accuracy from about 0.75 to about 0.94.
    """
    entry = specialties().get(split_variant(specialty)[0])
    if entry is None:
        return []
    return [*entry.terms, *(read_term_file(entry.lexicon) if entry.lexicon is not None else [])]


def training_questions(specialty: str, prepared_dir: Path | None = None, *, with_variants: bool = True) -> list[str]:
    """What the router learns a specialty from: the adapter's training questions (built-in set and prepared
    train split), the specialty's vocabulary, and (``with_variants``) its built-in sets in other languages."""
    from medlora.data.prepare import load_split

    names = [specialty, *(language_variants(specialty) if with_variants else [])]
    questions = [r.question for name in names for r in builtin_records(name)] + specialty_vocabulary(specialty)
    if prepared_dir is not None and (prepared_dir / "train.jsonl").is_file():
        try:
            questions += [r.question for r in load_split(prepared_dir, "train")]
        except MedloraError as err:
            log.warning("router: ignoring the prepared split of %s: %s", specialty, err)
    return list(dict.fromkeys(q.strip() for q in questions if q.strip()))


def build_router(
    adapters: Iterable[tuple[str, str]],
    *,
    threshold: float,
    prepared_dir_template: str | None = None,
    seed: int = 0,
) -> SpecialtyRouter | None:
    """A router over ``(adapter_name, specialty)`` pairs; ``None`` when no adapter has training questions.

    ``prepared_dir_template`` is ``data.output_dir`` (``data/processed/{specialty}``): the prepared train split
    there, when present, adds the questions the adapter actually saw.
    """
    questions: list[str] = []
    labels: list[str] = []
    covered: set[str] = set()
    adapters = list(adapters)
    served = {specialty for _, specialty in adapters}
    for name, specialty in adapters:
        prepared = Path(prepared_dir_template.format(specialty=specialty)) if prepared_dir_template else None
        # A variant with its own adapter keeps its questions; otherwise they teach the base specialty's class.
        with_variants = not (set(language_variants(specialty)) & served)
        found = training_questions(specialty, prepared, with_variants=with_variants)
        if not found:
            log.info("router: no training questions for adapter %s (specialty %s); auto never picks it",
                     name, specialty)
            continue
        questions += found
        labels += [name] * len(found)
        covered.add(split_variant(specialty)[0])
    if not questions:
        return None
    for specialty in builtin_specialties():
        if specialty not in covered:
            others = training_questions(specialty)
            questions += others
            labels += [BASE_LABEL] * len(others)
    return SpecialtyRouter.fit(questions, labels, threshold=threshold, seed=seed)


@dataclass
class RoutingReport:
    """Held-out routing accuracy per specialty (a base fallback counts as a miss)."""

    accuracy: dict[str, float]
    overall: float
    train_questions: int
    test_questions: dict[str, int]
    fallbacks: int


def routing_accuracy(
    specialties: Sequence[str] | None = None,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    threshold: float = 0.6,
    records: dict[str, list[QARecord]] | None = None,
) -> RoutingReport:
    """Train on part of each specialty's built-in questions, measure routing on the rest.

    The split is by disease focus (``split_by_group``), as for the adapters: a test question asks about a
    disease the router never saw, which is what a real user does. The specialty vocabulary is used as in
    :func:`build_router`. ``records`` replaces the built-in sets (and then no vocabulary is added).
    ``specialties`` defaults to every specialty with an English built-in set.
    """
    from medlora.data.splits import split_by_group

    if specialties is None:
        specialties = list(records) if records is not None else builtin_specialties()
    train_q: list[str] = []
    train_l: list[str] = []
    held_out: dict[str, list[str]] = {}
    for specialty in specialties:
        pool = records[specialty] if records is not None else builtin_records(specialty)
        if not pool:
            raise MedloraError(f"no questions for specialty '{specialty}' to measure routing on")
        splits = split_by_group(pool, validation_fraction=0.0, test_fraction=test_fraction, seed=seed)
        if not splits["test"]:
            raise MedloraError(f"{specialty}: too few questions for a held-out split")
        known = [r.question for r in splits["train"]] + (specialty_vocabulary(specialty) if records is None else [])
        train_q += known
        train_l += [specialty] * len(known)
        held_out[specialty] = [r.question for r in splits["test"]]
    router = SpecialtyRouter.fit(train_q, train_l, threshold=threshold, seed=seed)
    accuracy: dict[str, float] = {}
    hits = total = fallbacks = 0
    for specialty, questions in held_out.items():
        decisions = router.route_many(questions)
        correct = sum(d.adapter == specialty for d in decisions)
        fallbacks += sum(d.adapter is None for d in decisions)
        accuracy[specialty] = correct / len(questions)
        hits += correct
        total += len(questions)
    return RoutingReport(
        accuracy=accuracy,
        overall=hits / total,
        train_questions=len(train_q),
        test_questions={s: len(q) for s, q in held_out.items()},
        fallbacks=fallbacks,
    )
