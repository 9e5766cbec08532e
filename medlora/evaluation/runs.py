"""Answering an evaluation context with one model variant, and scoring and comparing variants.

Scores are keyed ``metric@mode`` (``rouge_l@open``) for question metrics and by plain name for vignette
metrics; citation metrics exist only in modes that show sources. :func:`compare` gives every key its paired
bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.progress import Progress

from medlora.evaluation.bootstrap import Delta, paired_bootstrap
from medlora.evaluation.context import MODE_LABELS, EvaluationContext
from medlora.evaluation.likelihood import choose, score_options
from medlora.evaluation.metrics import EvalSample, get_metric
from medlora.models.generation import MAX_COPIED_TOKENS, Generation, generate_answers, shown_text
from medlora.models.loading import LoadedModel
from medlora.models.prompts import build_prompt


@dataclass
class VariantRun:
    answers: dict[str, list[Generation]]  # mode -> one generation per question
    vignettes: list[Generation] = field(default_factory=list)
    choices: list[int | None] = field(default_factory=list)


def numbered(sources: Sequence[Any]) -> list[tuple[int, str, str]]:
    return [(i, s.title, s.text) for i, s in enumerate(sources, start=1)]


def run_variant(model: Any, loaded: LoadedModel, ctx: EvaluationContext, *, max_new_tokens: int,
                vignette_max_new_tokens: int, batch_size: int, progress: Progress, label: str,
                copy_limit: int | None = MAX_COPIED_TOKENS) -> VariantRun:
    """Answer every question in every mode, and every vignette, with ``model`` (``copy_limit``: see
    :class:`medlora.models.generation.CopyLimit`; the default is the product's decoding)."""
    tok, spec = loaded.tokenizer, loaded.spec
    run = VariantRun(answers={})
    for mode, sources in ctx.modes.items():
        prompts = [build_prompt(tok, spec, r.question, numbered(s)) for r, s in zip(ctx.records, sources, strict=True)]
        limits = [len(s) for s in sources] if mode != "closed" else None
        texts = [shown_text(s) for s in sources] if mode != "closed" else None
        task = progress.add_task(f"{label}: {MODE_LABELS[mode]}", total=len(prompts))
        run.answers[mode] = generate_answers(model, tok, spec, prompts, max_new_tokens=max_new_tokens,
                                             batch_size=batch_size, citations=limits, copy_limit=copy_limit,
                                             source_texts=texts, on_batch=partial(progress.advance, task))
    if ctx.vignettes:
        prompts = [build_prompt(tok, spec, v.question) for v in ctx.vignettes]
        task = progress.add_task(f"{label}: vignettes", total=2 * len(prompts))
        run.vignettes = generate_answers(model, tok, spec, prompts, max_new_tokens=vignette_max_new_tokens,
                                         batch_size=batch_size, copy_limit=copy_limit,
                                         on_batch=lambda n: progress.advance(task, n))
        for prompt, vignette in zip(prompts, ctx.vignettes, strict=True):
            run.choices.append(choose(score_options(model, tok, spec, prompt, vignette.options))
                               if vignette.options else None)
            progress.advance(task)
    return run


def samples_of(ctx: EvaluationContext, run: VariantRun) -> dict[str, list[EvalSample]]:
    """Samples per mode (``qa@closed`` ...) and for vignettes (``vignette``)."""
    extras = {"vocabulary": ctx.vocabulary} if ctx.vocabulary is not None else {}
    out = {f"qa@{mode}": [EvalSample(r, g.text, {**extras, "retrieved": s, "loop_stopped": g.loop_stopped})
                          for r, g, s in zip(ctx.records, run.answers[mode], ctx.modes[mode], strict=True)]
           for mode in ctx.modes}
    out["vignette"] = [
        EvalSample(v.to_record(), g.text, {"choice": c, "answer_index": v.answer_index, "options": v.options})
        for v, g, c in zip(ctx.vignettes, run.vignettes, run.choices, strict=True)
    ]
    return out


def metric_keys(ctx: EvaluationContext, metric_names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``key -> (metric, samples)`` for every score this context yields."""
    keys: dict[str, tuple[str, str]] = {}
    for name in metric_names:
        metric = get_metric(name)
        if metric.task == "vignette":
            keys[name] = (name, "vignette")
            continue
        for mode in ctx.modes:
            if metric.task == "cited" and mode == "closed":
                continue
            keys[f"{name}@{mode}"] = (name, f"qa@{mode}")
    return keys


def score_run(ctx: EvaluationContext, run: VariantRun, metric_names: Sequence[str]) -> dict[str, float | None]:
    samples = samples_of(ctx, run)
    return {key: get_metric(name).compute(samples[group])
            for key, (name, group) in metric_keys(ctx, metric_names).items()}


def compare(ctx: EvaluationContext, base: VariantRun, other: VariantRun, metric_names: Sequence[str], *,
            resamples: int, seed: int) -> dict[str, Delta]:
    """Paired bootstrap interval of ``other − base`` for every key both can score."""
    base_samples, other_samples = samples_of(ctx, base), samples_of(ctx, other)
    out = {}
    for key, (name, group) in metric_keys(ctx, metric_names).items():
        delta = paired_bootstrap(get_metric(name), base_samples[group], other_samples[group],
                                 resamples=resamples, seed=seed)
        if delta is not None:
            out[key] = delta
    return out


def compare_modes(ctx: EvaluationContext, run: VariantRun, metric: str, better: str, worse: str, *,
                  resamples: int, seed: int) -> Delta | None:
    """One variant against itself across two modes (open-book vs closed-book ROUGE-L), paired by question."""
    if better not in run.answers or worse not in run.answers:
        return None
    samples = samples_of(ctx, run)
    return paired_bootstrap(get_metric(metric), samples[f"qa@{worse}"], samples[f"qa@{better}"],
                            resamples=resamples, seed=seed)


def metric_info(keys: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and display kinds of score keys (``rouge_l@open`` → "ROUGE-L · open-book", ``score``)."""
    return {k: label_of(k) for k in keys}, {k: get_metric(k.partition("@")[0]).display for k in keys}


def label_of(key: str) -> str:
    name, _, mode = key.partition("@")
    label = get_metric(name).label
    return f"{label} · {MODE_LABELS[mode]}" if mode else label
