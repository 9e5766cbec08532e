"""Outside the specialty: does the adapter change what the model does on questions it was not trained for?

Two checks, each base vs adapter with a paired interval (a good adapter stays within noise):

- **other specialties** — closed-book answers to another specialty's held-out questions (its prepared split);
- **reading check** — yes/no questions over medical abstracts ("Is this abstract about nervous system
  diseases?"), built from the abstracts' labels in yes/no pairs that ask every topic as often on yes as on no
  items (so no answer follows from the asked topic alone), scored by log-likelihood of "Yes" vs "No", so it
  measures reading, not generation style. Its accuracy moves
  with how often a model says "Yes" as much as with reading, so each model's **AUC** of the "Yes" minus "No"
  log-likelihood is reported beside it: threshold-free, 0.5 when the model does not read the checks at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from medlora.config import MedloraConfig
from medlora.data.records import QARecord
from medlora.data.sources.abstracts import Abstract, iter_abstracts
from medlora.evaluation.bootstrap import paired_bootstrap
from medlora.evaluation.context import EvaluationContext, data_path, build_context
from medlora.evaluation.likelihood import choose, score_options
from medlora.evaluation.metrics import get_metric
from medlora.evaluation.metrics.base import EvalSample, register
from medlora.evaluation.metrics.diagnostic import DiagnosticMultipleChoice
from medlora.evaluation.runs import VariantRun, run_variant, samples_of
from medlora.models.loading import LoadedModel
from medlora.models.prompts import build_prompt, reading_question
from medlora.retrieval import SourceIndex
from medlora.specialties import english_builtin_specialties

OPTIONS = ["Yes", "No"]
ABSTRACT_CHARS = 700


@dataclass(frozen=True)
class ReadingCheck:
    question: str
    answer_index: int  # 0 = yes, 1 = no
    condition: str
    row: int


def build_reading_checks(abstracts_csv: Path, n: int, seed: int, balanced_topics: bool = True) -> list[ReadingCheck]:
    """``n`` seeded yes/no questions, half yes and half no, alternating.

    ``balanced_topics`` (the default) builds them in pairs: one topic, one abstract of that class (yes) and one of
    another class (no), topics taken in turn and the other class in turn. Every topic is then asked as often on
    yes items as on no items, and every class is read as often, so neither the asked topic nor the abstract's
    class alone tells the answer: only reading does. The older draw (``False``: each abstract asked about its
    own class or a random other one) asked the most common class far more often on yes items, so a model that
    says "Yes" most readily to that topic scored above chance without reading (docs/RESULTS.md, round 13); it
    is kept to re-score the stored results of rounds 9 to 12. Stops early, with fewer checks, when a class runs
    out of abstracts."""
    abstracts = list(iter_abstracts(abstracts_csv))
    conditions = sorted({a.condition for a in abstracts if a.condition})
    if len(conditions) < 2 or n <= 0:
        return []
    rng = random.Random(seed)
    if not balanced_topics:
        return _own_or_random_checks(abstracts, conditions, n, rng)
    pools = {c: [a for a in abstracts if a.condition == c] for c in conditions}
    for pool in pools.values():
        rng.shuffle(pool)
    order = list(conditions)
    rng.shuffle(order)
    checks: list[ReadingCheck] = []
    for pair in range((n + 1) // 2):
        asked = order[pair % len(order)]
        others = [c for c in order if c != asked]
        other = others[(pair // len(order)) % len(others)]
        if not pools[asked] or not pools[other]:
            break
        for answer_index, abstract in ((0, pools[asked].pop()), (1, pools[other].pop())):
            if len(checks) < n:
                checks.append(_check(abstract, asked, answer_index))
    return checks


def _check(abstract: Abstract, asked: str, answer_index: int) -> ReadingCheck:
    body = abstract.text[:ABSTRACT_CHARS].rsplit(" ", 1)[0]
    return ReadingCheck(reading_question(body, asked), answer_index, asked, abstract.row)


def _own_or_random_checks(abstracts: list[Abstract], conditions: list[str], n: int,
                          rng: random.Random) -> list[ReadingCheck]:
    """Rounds 9 to 12's draw: yes items ask the abstract's own class, no items a uniformly random other one."""
    checks = []
    for i, abstract in enumerate(rng.sample(abstracts, min(n, len(abstracts)))):
        yes = i % 2 == 0
        asked = abstract.condition if yes else rng.choice([c for c in conditions if c != abstract.condition])
        checks.append(_check(abstract, asked, 0 if yes else 1))
    return checks


def reading_samples(checks: list[ReadingCheck], choices: list[int | None]) -> list[EvalSample]:
    return [EvalSample(QARecord(c.question, OPTIONS[c.answer_index], "reading-check"), "",
                       {"choice": choice, "answer_index": c.answer_index})
            for c, choice in zip(checks, choices, strict=True)]


@register
class ReadingCheckAccuracy(DiagnosticMultipleChoice):
    """Share of yes/no reading checks answered correctly (by log-likelihood, as multiple choice)."""

    name = "reading_check_accuracy"
    label = "Yes/no reading check (abstracts)"
    task = "reading"


@dataclass
class OutsideSet:
    """The questions of other specialties and the reading checks, answered by each variant."""

    contexts: dict[str, EvaluationContext]
    checks: list[ReadingCheck]
    answers: dict[str, dict[str, VariantRun]] = field(default_factory=dict)  # variant -> specialty -> run
    choices: dict[str, list[int | None]] = field(default_factory=dict)  # variant -> reading-check choices
    margins: dict[str, list[float]] = field(default_factory=dict)  # variant -> "Yes" minus "No" log-likelihood


def outside_specialties(cfg: MedloraConfig) -> list[str]:
    """``evaluation.outside_specialties``, or every registered English specialty when it is empty."""
    return list(cfg.evaluation.outside_specialties) or english_builtin_specialties()


def build_outside(cfg: MedloraConfig, specialty: str, index: SourceIndex | None, split: str = "test") -> OutsideSet:
    ecfg = cfg.evaluation
    contexts = {}
    for other in outside_specialties(cfg):
        if other == specialty:
            continue
        data_dir = Path(cfg.data.output_dir.format(specialty=other))
        if not (data_dir / f"{split}.jsonl").is_file():
            continue
        sub = cfg.with_overrides({"evaluation.max_samples": ecfg.outside_samples, "evaluation.vignettes": 0})
        contexts[other] = build_context(sub, data_dir, ["rouge_l"], specialty=other, index=index, modes=["closed"],
                                        split=split)
    checks: list[ReadingCheck] = []
    csv_path = data_path(ecfg.abstracts_csv, "abstracts")
    if ecfg.reading_checks > 0 and csv_path is not None and csv_path.is_file():
        checks = build_reading_checks(csv_path, ecfg.reading_checks, ecfg.seed)
    return OutsideSet(contexts, checks)


def run_outside(outside: OutsideSet, name: str, model: Any, loaded: LoadedModel, cfg: MedloraConfig,
                progress: Progress) -> None:
    ecfg = cfg.evaluation
    outside.answers[name] = {
        s: run_variant(model, loaded, ctx, max_new_tokens=ecfg.max_new_tokens, vignette_max_new_tokens=1,
                       batch_size=ecfg.batch_size, progress=progress, label=f"{name} on {s}")
        for s, ctx in outside.contexts.items()}
    if outside.checks:
        task = progress.add_task(f"{name}: reading checks", total=len(outside.checks))
        choices: list[int | None] = []
        margins: list[float] = []
        for check in outside.checks:
            prompt = build_prompt(loaded.tokenizer, loaded.spec, check.question)
            scores = score_options(model, loaded.tokenizer, loaded.spec, prompt, OPTIONS)
            choices.append(choose(scores))
            margins.append(scores[0].loglikelihood - scores[1].loglikelihood)
            progress.advance(task)
        outside.choices[name] = choices
        outside.margins[name] = margins


def score_outside(outside: OutsideSet, resamples: int, seed: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for specialty, ctx in outside.contexts.items():
        base, adapter = outside.answers["base"][specialty], outside.answers["adapter"][specialty]
        for metric_name in ("rouge_l", "bleu"):
            key = f"{metric_name}@{specialty}"
            b = samples_of(ctx, base)["qa@closed"]
            a = samples_of(ctx, adapter)["qa@closed"]
            delta = paired_bootstrap(get_metric(metric_name), b, a, resamples=resamples, seed=seed)
            rows[key] = {"label": f"{get_metric(metric_name).label} · {specialty} questions (closed-book)",
                         "base": get_metric(metric_name).compute(b), "adapter": get_metric(metric_name).compute(a),
                         "n": len(b), "interval": delta.to_json() if delta else None}
    if outside.checks:
        metric = get_metric("reading_check_accuracy")
        b = reading_samples(outside.checks, outside.choices["base"])
        a = reading_samples(outside.checks, outside.choices["adapter"])
        delta = paired_bootstrap(metric, b, a, resamples=resamples, seed=seed)
        base_choices, adapter_choices = outside.choices["base"], outside.choices["adapter"]
        rows["reading_check_accuracy"] = {
            "label": metric.label, "base": metric.compute(b), "adapter": metric.compute(a), "n": len(b),
            "interval": delta.to_json() if delta else None,
            # The default base reads these at chance (docs/RESULTS.md, round 10): its accuracy then moves only
            # with how often a model says "Yes" and which of the base's answers the adapter flips, so both are
            # reported beside it.
            "yes_rate": {"base": yes_rate(base_choices), "adapter": yes_rate(adapter_choices)},
            "changed": changed_share(base_choices, adapter_choices)}
        if "base" in outside.margins and "adapter" in outside.margins:
            truth = [c.answer_index for c in outside.checks]
            rows["reading_check_accuracy"]["auc"] = {
                name: auc_interval(outside.margins[name], truth, resamples, seed) for name in ("base", "adapter")}
            rows["reading_check_accuracy"]["auc_delta"] = auc_delta_interval(
                outside.margins["base"], outside.margins["adapter"], truth, resamples, seed)
    return rows


def auc(margins: Sequence[float], truth: Sequence[int]) -> float:
    """P(a "yes" check scores above a "no" check), ties counted half. 0.5 means the scores do not read the
    checks, and also when only one answer occurs, where the AUC is undefined."""
    if len(set(truth)) < 2:
        return 0.5
    return float(roc_auc_score([int(t == 0) for t in truth], margins))


def auc_interval(margins: Sequence[float], truth: Sequence[int], resamples: int = 1000,
                 seed: int = 0) -> dict[str, float]:
    """The AUC with a 95 % bootstrap interval over checks. When the base's interval includes 0.5 the check
    cannot show reading lost, only answers changed (docs/RESULTS.md, round 10)."""
    return _bootstrap(lambda picked: auc([margins[i] for i in picked], [truth[i] for i in picked]),
                      len(truth), resamples, seed)


def auc_delta_interval(base: Sequence[float], adapter: Sequence[float], truth: Sequence[int],
                       resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Adapter minus base AUC with a paired 95 % bootstrap interval (both models on the same resampled checks).
    Accuracy barely moves when a model says "Yes" to few checks, whatever its margins do; this says whether the
    adapter's margins follow the abstracts measurably less (or more) than the base's."""

    def delta(picked: Sequence[int]) -> float:
        sub = [truth[i] for i in picked]
        return auc([adapter[i] for i in picked], sub) - auc([base[i] for i in picked], sub)

    return _bootstrap(delta, len(truth), resamples, seed)


def _bootstrap(statistic: Callable[[Sequence[int]], float], n: int, resamples: int,
               seed: int) -> dict[str, float]:
    """``statistic`` on all ``n`` checks, with the 95 % percentile interval over seeded resamples of them. AUC is
    not a per-check mean, so :func:`~medlora.evaluation.bootstrap.paired_bootstrap`'s additive statistics do not
    apply."""
    rng = random.Random(seed)
    draws = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    return {"mean": statistic(range(n)), "low": draws[int(0.025 * resamples)],
            "high": draws[int(0.975 * resamples)]}


def yes_rate(choices: Sequence[int | None]) -> float:
    """The share of reading checks answered "Yes" (choice 0)."""
    return sum(c == 0 for c in choices) / len(choices) if choices else 0.0


def changed_share(base: Sequence[int | None], adapter: Sequence[int | None]) -> float:
    """The share of the base's reading-check answers that the adapter answers otherwise."""
    return sum(x != y for x, y in zip(base, adapter, strict=True)) / len(base) if base else 0.0


def base_reads(row: dict[str, Any]) -> bool | None:
    """Whether the base reads the yes/no checks above chance (AUC interval above 0.5); None when unknown."""
    aucs = row.get("auc")
    return None if not aucs else aucs["base"]["low"] > 0.5


def adapter_reverses(row: dict[str, Any]) -> bool:
    """Whether the adapter's AUC interval lies wholly below 0.5: its "Yes" margin goes against the truth — a
    change the check does measure even where the base reads nothing. (On rounds 9 to 12's draw a bias toward
    some asked topics could do this too; the topic-balanced draw leaves misreading as the cause.)"""
    aucs = row.get("auc")
    return aucs is not None and aucs["adapter"]["high"] < 0.5


def within_noise(outside: dict[str, Any], needs_base_skill: bool = False) -> list[str]:
    """Checks where the adapter is measurably worse than the base (the whole interval below zero).

    ``needs_base_skill``: leave out a reading check the base does not read above chance, where accuracy moves
    only with changed answers, unless the adapter's answers go measurably against the truth
    (``evaluation.gate.outside_needs_base_skill``)."""
    return [row["label"] for key, row in outside.items()
            if row.get("interval") and row["interval"]["high"] < 0
            and not (needs_base_skill and key == "reading_check_accuracy" and base_reads(row) is False
                     and not adapter_reverses(row))]
