"""``medlora evaluate``: base vs adapter on the held-out split, in every mode, with paired intervals.

The pieces live beside this file: :mod:`.context` (questions, modes and their sources, vignettes),
:mod:`.runs` (answering and scoring), :mod:`.bootstrap` (intervals), :mod:`.gate`, :mod:`.forgetting`
(outside the specialty) and :mod:`.matrix` (several adapters x several specialties). This module runs them in
order, writes ``report.{json,md,html}`` and, through :mod:`.results`, ``predictions.jsonl`` (every answer, for
auditing), and records the result in the adapter's card.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from medlora.adapters.checks import check_adapter_base, load_lora
from medlora.config import MedloraConfig
from medlora.data.prepare import load_manifest
from medlora.evaluation.context import MODE_LABELS, EvaluationContext, build_context
from medlora.evaluation.forgetting import OutsideSet, build_outside, run_outside, score_outside, within_noise
from medlora.evaluation.gate import check_gate
from medlora.evaluation.metrics import get_metric
from medlora.evaluation.report import write_reports
from medlora.evaluation.resources import (
    lora_parameter_bytes,
    merged_copy,
    peak_rss_bytes,
    percentile,
    rss_bytes,
    summarise,
    time_variants,
)
from medlora.evaluation.results import EvaluationReport, record_in_model_card, write_predictions
from medlora.evaluation.runs import (
    VariantRun,
    compare,
    compare_modes,
    metric_info,
    metric_keys,
    numbered,
    run_variant,
    score_run,
)
from medlora.evaluation.vocabulary import Vocabulary
from medlora.models.generation import Generation, generate_answers, shown_text
from medlora.models.loading import LoadedModel, load_from_config
from medlora.models.prompts import build_prompt
from medlora.models.quantization import is_quantized
from medlora.retrieval import SourceIndex, configured_index

log = logging.getLogger(__name__)

# The original note's before/after questions, and their English versions (shown in every report).
NOTE_QUESTIONS = [
    "Diagnostic d'une lésion pigmentée asymétrique?",
    "Critères diagnostiques mélanome malin?",
    "Diagnostic d'une lésion érythémateuse squameuse en plaques?",
    "How is an asymmetric pigmented skin lesion diagnosed?",
    "What are the diagnostic criteria for malignant melanoma?",
    "What is the diagnosis of an erythematous, scaly, plaque-shaped skin lesion?",
]


def latency_summary(generations: Sequence[Generation]) -> dict[str, float]:
    seconds = [g.seconds for g in generations]
    tokens = sum(g.new_tokens for g in generations)
    if not seconds:
        return {}
    return {
        "latency_mean_s": statistics.fmean(seconds),
        "latency_p50_s": statistics.median(seconds),
        "latency_p95_s": percentile(seconds, 0.95),
        "tokens_per_s": tokens / max(sum(seconds), 1e-9),
        "mean_new_tokens": tokens / len(generations),
    }


def _device_name(loaded: LoadedModel) -> str:
    if loaded.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(loaded.device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# --- base vs one adapter ------------------------------------------------------------------------------


def _note_case_prompts(loaded: LoadedModel, index: SourceIndex | None, k: int,
                       min_title_match: float) -> tuple[list[str], list[list[Any]]]:
    """The note's questions closed-book, then with the bot's sources (full index, as the bot answers them)."""
    tok, spec = loaded.tokenizer, loaded.spec
    sources = [[h.source for h in index.search(q, k, min_title_match=min_title_match)] if index is not None else []
               for q in NOTE_QUESTIONS]
    prompts = [build_prompt(tok, spec, q) for q in NOTE_QUESTIONS]
    prompts += [build_prompt(tok, spec, q, numbered(s)) for q, s in zip(NOTE_QUESTIONS, sources, strict=True)]
    return prompts, sources


def evaluate_adapter(
    cfg: MedloraConfig,
    data_dir: str | Path,
    adapter_dir: str | Path,
    output_dir: str | Path,
    *,
    loaded: LoadedModel | None = None,
    vocabulary: Vocabulary | None = None,
    index: SourceIndex | None = None,
    split: str = "test",
    record_in_card: bool = True,
) -> EvaluationReport:
    """Evaluate base vs adapter on ``data_dir``'s ``split``; write reports; record the metrics in the card.

    ``vocabulary`` and ``index`` replace the cached default vocabulary and source index (tests). The sweep
    evaluates on ``split="validation"`` and leaves the card alone.
    """
    adapter_dir = Path(adapter_dir)
    output_dir = Path(output_dir)
    loaded = loaded or load_from_config(cfg.models.llm)
    check_adapter_base(adapter_dir, loaded)
    ecfg = cfg.evaluation
    metric_names = list(ecfg.metrics)
    for name in metric_names:
        get_metric(name)  # fail on an unknown metric before any generation
    if index is None and any(m != "closed" for m in ecfg.modes):
        index = configured_index(cfg)
    ctx = build_context(cfg, data_dir, metric_names, vocabulary=vocabulary, index=index, split=split)
    outside = build_outside(cfg, ctx.specialty, index) if ecfg.outside else OutsideSet({}, [])
    note_prompts, note_sources = (
        _note_case_prompts(loaded, index, ecfg.citation_top_k, cfg.service.min_source_match)
        if ecfg.note_cases else ([], []))
    note_limits = [0] * len(NOTE_QUESTIONS) + [len(s) for s in note_sources] if note_prompts else None
    note_texts = [""] * len(NOTE_QUESTIONS) + [shown_text(s) for s in note_sources] if note_prompts else None

    resources: dict[str, Any] = {"settings": {"answers": min(ecfg.latency_samples, len(ctx.records)),
                                              "max_new_tokens": ecfg.latency_max_new_tokens, "batch_size": 1,
                                              "device": _device_name(loaded)},
                                 "memory": {}, "notes": []}
    runs: dict[str, VariantRun] = {}
    notes_answers: dict[str, list[Generation]] = {}
    # Where the evaluation's time goes (the demo has a time budget): reported beside the resources.
    stage_seconds: dict[str, float] = {}
    resources["stage_seconds"] = stage_seconds
    with Progress() as progress:
        for name in ("base", "adapter"):
            if name == "adapter":
                rss_before = rss_bytes()
                model = load_lora(loaded.model, adapter_dir)  # LoRA-only safetensors, as the bot checks
                model.eval()
                resources["memory"]["rss_added_by_adapter_bytes"] = rss_bytes() - rss_before
                resources["memory"]["adapter_parameter_bytes"] = lora_parameter_bytes(model)
            else:
                model = loaded.model
            started = time.perf_counter()
            runs[name] = run_variant(model, loaded, ctx, max_new_tokens=ecfg.max_new_tokens,
                                     vignette_max_new_tokens=ecfg.vignette_max_new_tokens,
                                     batch_size=ecfg.batch_size, progress=progress, label=name)
            stage_seconds[f"{name}: questions and vignettes"] = time.perf_counter() - started
            started = time.perf_counter()
            run_outside(outside, name, model, loaded, cfg, progress)
            if note_prompts:
                notes_answers[name] = generate_answers(model, loaded.tokenizer, loaded.spec, note_prompts,
                                                       max_new_tokens=ecfg.max_new_tokens,
                                                       batch_size=ecfg.batch_size, citations=note_limits,
                                                       source_texts=note_texts)
            stage_seconds[f"{name}: outside checks and note cases"] = time.perf_counter() - started
        peft_model = model
        resources["memory"]["peak_rss_bytes"] = peak_rss_bytes()
        if ecfg.latency_samples > 0 and ctx.records:
            task = progress.add_task("Timing base / adapter / merged", total=None)
            started = time.perf_counter()
            resources.update(_time_variants(peft_model, loaded, ctx, cfg, resources))
            stage_seconds["latency timing"] = time.perf_counter() - started
            progress.update(task, total=1, completed=1)
        peft_model.unload()  # give the caller its base model back untouched
    summarise(resources)

    keys = list(metric_keys(ctx, metric_names))
    first_mode = next(iter(ctx.modes))
    variants = {name: {**score_run(ctx, run, metric_names), **latency_summary(run.answers[first_mode])}
                for name, run in runs.items()}
    intervals = compare(ctx, runs["base"], runs["adapter"], metric_names, resamples=ecfg.bootstrap_resamples,
                        seed=ecfg.seed)
    labels, displays = metric_info(keys)
    checks = _checks(ctx, runs, ecfg.bootstrap_resamples, ecfg.seed)
    outside_rows = score_outside(outside, ecfg.bootstrap_resamples, ecfg.seed) if outside.answers else {}
    manifest = load_manifest(data_dir)
    report = EvaluationReport(
        variants=variants,
        metric_labels=labels,
        metric_display=displays,
        samples=len(ctx.records),
        counts=ctx.counts,
        intervals=intervals,
        checks=checks,
        outside=outside_rows,
        meta={
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "base_model": loaded.source.base_model_id,
            "adapter": adapter_dir.name,
            "specialty": ctx.specialty,
            "split": split,
            "dataset_hash": manifest.get("dataset_hash"),
            "modes": {m: MODE_LABELS[m] for m in ctx.modes},
            "max_new_tokens": ecfg.max_new_tokens,
            "vignette_max_new_tokens": ecfg.vignette_max_new_tokens,
            "decoding": "greedy, loop stop, in-range citations",
            "top_k_sources": ecfg.citation_top_k,
            "bootstrap_resamples": ecfg.bootstrap_resamples,
            "seed": ecfg.seed,
        },
        resources=resources,
        evaluation_data=ctx.data,
        notes=ctx.notes,
        examples=[
            {"question": r.question, "reference": r.answer, "base": b.text, "adapter": a.text}
            for r, b, a in list(zip(ctx.records, runs["base"].answers[first_mode],
                                    runs["adapter"].answers[first_mode], strict=True))[:5]
        ],
        vignette_examples=[
            {"vignette": v.question, "gold": v.focus, "options": v.options,
             "base_choice": v.options[bc] if bc is not None else None, "base": b.text,
             "adapter_choice": v.options[ac] if ac is not None else None, "adapter": a.text}
            for v, b, a, bc, ac in list(zip(ctx.vignettes, runs["base"].vignettes, runs["adapter"].vignettes,
                                            runs["base"].choices, runs["adapter"].choices, strict=True))[:3]
        ],
        cited_examples=[
            {"mode": MODE_LABELS[mode], "question": r.question, "sources": [s.title for s in sources],
             "reference": r.answer, "base": b.text, "adapter": a.text}
            for mode in ctx.modes if mode != "closed"
            for r, sources, b, a in list(zip(ctx.records, ctx.modes[mode], runs["base"].answers[mode],
                                             runs["adapter"].answers[mode], strict=True))[:3]
        ],
        note_cases=[
            {"question": q, "sources": [s.title for s in srcs],
             "base_closed": notes_answers["base"][i].text, "adapter_closed": notes_answers["adapter"][i].text,
             "base_sources": notes_answers["base"][i + len(NOTE_QUESTIONS)].text,
             "adapter_sources": notes_answers["adapter"][i + len(NOTE_QUESTIONS)].text}
            for i, (q, srcs) in enumerate(zip(NOTE_QUESTIONS, note_sources, strict=True))
        ] if notes_answers else [],
    )
    gate = ecfg.gate
    report.gate = check_gate(variants, gate.margins, intervals=intervals, modes=gate.modes, no_worse=gate.no_worse)
    if gate.outside:
        worse = within_noise(outside_rows)
        gated = within_noise(outside_rows, gate.outside_needs_base_skill)
        report.gate.failures += [f"outside the specialty, measurably worse: {label}" for label in gated]
        report.gate.waived += [f"{label}, measurably worse, but the base reads it at chance "
                               "(evaluation.gate.outside_needs_base_skill)" for label in worse if label not in gated]
        report.gate.passed = not report.gate.failures
    loss_curve = adapter_dir / "loss_curve.png"
    write_reports(report.to_json(), output_dir, loss_curve=loss_curve if loss_curve.is_file() else None)
    write_predictions(output_dir / "predictions.jsonl", ctx, runs)
    if record_in_card:
        record_in_model_card(adapter_dir, report)
    return report


def _checks(ctx: EvaluationContext, runs: dict[str, VariantRun], resamples: int, seed: int) -> dict[str, Any]:
    """Figures that are not base-vs-adapter deltas: open- vs closed-book for the adapter, loop-stop counts."""
    checks: dict[str, Any] = {}
    for mode in ctx.modes:
        if mode == "closed":
            continue
        delta = compare_modes(ctx, runs["adapter"], "rouge_l", mode, "closed", resamples=resamples, seed=seed)
        if delta is not None:
            checks[f"adapter_rouge_l_{mode}_minus_closed"] = delta.to_json()
    checks["loop_stopped"] = {name: {mode: sum(g.loop_stopped for g in gens) for mode, gens in run.answers.items()}
                              for name, run in runs.items()}
    return checks


def latency_prompts(loaded: LoadedModel, ctx: EvaluationContext, n: int) -> list[str]:
    return [build_prompt(loaded.tokenizer, loaded.spec, r.question) for r in ctx.records[:n]]


def _time_variants(peft_model: Any, loaded: LoadedModel, ctx: EvaluationContext, cfg: MedloraConfig,
                   resources: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Latency of base (adapter disabled), adapter (unmerged) and merged adapter (a merged copy), interleaved."""
    ecfg = cfg.evaluation
    prompts = latency_prompts(loaded, ctx, ecfg.latency_samples)
    variants: dict[str, Any] = {"base": (peft_model, peft_model.disable_adapter), "adapter": (peft_model, None)}
    if is_quantized(loaded.model):
        resources["notes"].append("merged adapter not timed: merging into a k-bit base is not supported")
        return time_variants(variants, loaded.tokenizer, loaded.spec, prompts, ecfg.latency_max_new_tokens)
    with merged_copy(peft_model) as merged:
        variants["merged"] = (merged, None)
        timings = time_variants(variants, loaded.tokenizer, loaded.spec, prompts, ecfg.latency_max_new_tokens)
    resources["memory"]["peak_rss_with_merged_copy_bytes"] = peak_rss_bytes()
    return timings
