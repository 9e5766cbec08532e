"""``medlora evaluate``: answer the held-out split with the base and with the adapter, score both, report.

Three sample sets come from the prepared test split, each sized by ``evaluation`` in config.yaml:

- ``qa``: the test questions (``max_samples``), answered plainly: BLEU, ROUGE-L, terminology;
- ``vignette``: diagnostic vignettes built from the test split's MedQuAD "symptoms" answers (``vignettes``):
  multiple choice by log-likelihood and free text;
- ``cited``: test questions answered with retrieved sources in the prompt (``cited_answers``): citations.

Then latency (base, adapter, merged adapter) and memory. ``evaluate_matrix`` runs several adapters over
several specialties' test splits to show specialisation.
"""

from __future__ import annotations

import logging
import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from rich.progress import Progress

from medlora.config import MedloraConfig
from medlora.data.prepare import load_manifest, load_split
from medlora.data.records import QARecord
from medlora.errors import MedloraError
from medlora.evaluation.likelihood import choose, score_options
from medlora.evaluation.metrics import EvalSample, get_metric
from medlora.evaluation.report import (
    EXPECTED_LABEL,
    NOTE_EXPECTATIONS,
    render_data_markdown,
    render_markdown,
    render_resources_markdown,
    write_matrix_reports,
    write_reports,
)
from medlora.evaluation.resources import (
    lora_parameter_bytes,
    merged_copy,
    peak_rss_bytes,
    percentile,
    rss_bytes,
    summarise,
    time_variants,
)
from medlora.evaluation.vignettes import Vignette, build_vignettes
from medlora.evaluation.vocabulary import Vocabulary, load_vocabulary
from medlora.fsutil import atomic_directory
from medlora.models.adapters import check_adapter_base
from medlora.models.generation import Generation, generate_answers
from medlora.models.loading import LoadedModel, load_from_config
from medlora.models.prompts import build_prompt
from medlora.models.quantization import is_quantized
from medlora.training.model_card import read_metadata, write_metadata

log = logging.getLogger(__name__)

TASKS = ("qa", "vignette", "cited")


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class EvaluationReport:
    variants: dict[str, dict[str, float | None]]
    metric_labels: dict[str, str]
    samples: int
    meta: dict[str, Any]
    examples: list[dict[str, str]]
    gate: GateResult | None = None
    metric_display: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    evaluation_data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    vignette_examples: list[dict[str, Any]] = field(default_factory=list)
    cited_examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {
            "variants": self.variants,
            "metric_labels": self.metric_labels,
            "metric_display": self.metric_display,
            "expected": {m: v for m, v in NOTE_EXPECTATIONS.items() if m in self.metric_labels},
            "expected_label": EXPECTED_LABEL,
            "samples": self.samples,
            "counts": self.counts,
            "meta": self.meta,
            "resources": self.resources,
            "evaluation_data": self.evaluation_data,
            "notes": self.notes,
            "examples": self.examples,
            "vignette_examples": self.vignette_examples,
            "cited_examples": self.cited_examples,
        }
        if self.gate is not None:
            data["gate"] = {"passed": self.gate.passed, "failures": self.gate.failures}
        return data


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


def score(samples: Sequence[EvalSample], metric_names: Sequence[str]) -> dict[str, float | None]:
    return {name: get_metric(name).compute(samples) for name in metric_names}


def check_gate(variants: dict[str, dict[str, float | None]], margins: dict[str, float]) -> GateResult:
    """The adapter must beat the base by at least ``margin`` on every gated metric (for a metric where lower
    is better, such as invented citations, it must be lower by at least ``margin``)."""
    failures = []
    base, adapter = variants["base"], variants["adapter"]
    for metric, margin in margins.items():
        if base.get(metric) is None or adapter.get(metric) is None:
            failures.append(f"{metric}: not measured (add it to evaluation.metrics, or check its samples)")
            continue
        try:
            higher_is_better = get_metric(metric).higher_is_better
        except MedloraError:
            higher_is_better = True
        lift = adapter[metric] - base[metric] if higher_is_better else base[metric] - adapter[metric]
        if lift < margin - 1e-9:  # tolerate float rounding (0.15 - 0.10 < 0.05)
            failures.append(
                f"{metric}: adapter {adapter[metric]:.4f} vs base {base[metric]:.4f} "
                f"(needs a {'lift' if higher_is_better else 'reduction'} of at least {margin:+.4f})"
            )
    return GateResult(passed=not failures, failures=failures)


# --- what to evaluate on ------------------------------------------------------------------------------


@dataclass
class EvaluationContext:
    """Everything the metrics need besides the model's answers, built once per specialty."""

    specialty: str
    records: list[QARecord]
    tasks: set[str]
    vocabulary: Vocabulary | None = None
    vignettes: list[Vignette] = field(default_factory=list)
    cited: list[tuple[QARecord, list[Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {"qa": len(self.records), "vignettes": len(self.vignettes), "cited": len(self.cited)}


def _data_path(value: str, kind: str) -> Path | None:
    if not value:
        return None
    if value != "auto":
        return Path(value)
    if kind == "medquad":
        from medlora.data.sources.medquad import default_medquad_dir

        return default_medquad_dir()
    from medlora.data.sources.abstracts import default_abstracts_csv

    return default_abstracts_csv()


def _cache_dir(cfg: MedloraConfig) -> Path:
    if cfg.evaluation.cache_dir:
        return Path(cfg.evaluation.cache_dir)
    from medlora.models.embedded import default_cache_dir

    return default_cache_dir()


def default_index(cfg: MedloraConfig) -> Any | None:
    """The citation index (MedQuAD + abstracts + built-in topics), from the cache when unchanged; None when
    there is nothing to index."""
    from medlora.data.specialties import english_builtin_specialties
    from medlora.service.retrieval import load_or_build_default_index

    medquad = _data_path(cfg.evaluation.medquad_dir, "medquad")
    abstracts = _data_path(cfg.evaluation.abstracts_csv, "abstracts")
    builtins = english_builtin_specialties()  # the package's specialty registry, not a hand-kept list
    medquad = medquad if medquad is not None and medquad.is_dir() else None
    abstracts = abstracts if abstracts is not None and abstracts.is_file() else None
    if medquad is None and abstracts is None and not builtins:
        return None
    return load_or_build_default_index(_cache_dir(cfg), medquad, abstracts, tuple(builtins))


def tasks_of(metric_names: Sequence[str]) -> set[str]:
    return {"qa"} | {get_metric(name).task for name in metric_names}


def build_context(
    cfg: MedloraConfig,
    data_dir: str | Path,
    metric_names: Sequence[str],
    *,
    specialty: str | None = None,
    vocabulary: Vocabulary | None = None,
    index: Any | None = None,
) -> EvaluationContext:
    """Read the test split and build the vocabulary, vignettes and cited questions the metrics need."""
    ecfg = cfg.evaluation
    data_dir = Path(data_dir)
    test = load_split(data_dir, "test")
    records = test[: ecfg.max_samples]
    if not records:
        raise MedloraError(f"{data_dir}: the test split is empty; prepare with a larger test_fraction")
    manifest = load_manifest(data_dir)
    specialty = specialty or manifest.get("specialty") or Path(cfg.data.specialty).stem
    ctx = EvaluationContext(specialty=specialty, records=records, tasks=tasks_of(metric_names))

    if any(get_metric(name).needs_vocabulary for name in metric_names):
        ctx.vocabulary = vocabulary or load_vocabulary(
            specialty, _data_path(ecfg.medquad_dir, "medquad"), _cache_dir(cfg))
        ctx.notes += [f"vocabulary: {n}" for n in ctx.vocabulary.notes]

    symptoms = sum(1 for r in test if r.qtype == "symptoms" and r.focus)
    if "vignette" in ctx.tasks and ecfg.vignettes > 0:
        pool = list(test)
        for split in ("train", "validation"):
            if (data_dir / f"{split}.jsonl").is_file():
                pool += load_split(data_dir, split)
        ctx.vignettes = build_vignettes(test, pool, ecfg.vignettes, ecfg.seed)
        if not ctx.vignettes:
            ctx.notes.append("no diagnostic vignettes: the test split has no usable MedQuAD 'symptoms' answers "
                             "(prepare with the medquad:auto source)")
        elif all(not v.options for v in ctx.vignettes):
            ctx.notes.append("multiple-choice diagnosis skipped: fewer than two foci in the prepared data")

    if "cited" in ctx.tasks and ecfg.cited_answers > 0:
        index = index if index is not None else default_index(cfg)
        if index is None:
            ctx.notes.append("no citation index: neither MedQuAD, the abstracts nor built-in sets were found")
        else:
            candidates = sorted((r for r in test if r.focus or r.cuis), key=lambda r: (r.doc_id, r.question))
            chosen = random.Random(ecfg.seed).sample(candidates, min(ecfg.cited_answers, len(candidates)))
            for record in chosen:
                retrieved = [hit.source for hit in index.search(record.question, ecfg.citation_top_k)]
                ctx.cited.append((record, retrieved))
            if not ctx.cited:
                ctx.notes.append("no cited answers: no test question has a focus or CUI to judge relevance by")

    ctx.data = {
        "specialty": specialty,
        "dataset_hash": manifest.get("dataset_hash"),
        "test_split_sha256": (manifest.get("sha256") or {}).get("test"),
        "test_records": len(test),
        "questions_evaluated": len(records),
        "symptoms_answers_in_test": symptoms,
        "vignettes": len(ctx.vignettes),
        "cited_answers": len(ctx.cited),
        "citation_index": _describe_index(index) if ctx.cited else None,
        "seed": ecfg.seed,
        "sources": [{k: s.get(k) for k in ("spec", "records", "license", "attribution")}
                    for s in manifest.get("sources", [])],
        "vocabulary": ctx.vocabulary.counts if ctx.vocabulary is not None else {},
    }
    return ctx


def _describe_index(index: Any) -> str | None:
    sources = getattr(index, "sources", None)
    if not sources:
        return None
    corpora = Counter(getattr(s, "corpus", "?") for s in sources)
    return f"{len(sources)} sources (" + ", ".join(f"{k} {v}" for k, v in corpora.most_common()) + "), bm25s"


# --- running one variant ------------------------------------------------------------------------------


@dataclass
class VariantRun:
    qa: list[Generation]
    vignettes: list[Generation] = field(default_factory=list)
    choices: list[int | None] = field(default_factory=list)
    cited: list[Generation] = field(default_factory=list)


def _generate(loaded: LoadedModel, model: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
              progress: Progress, label: str) -> list[Generation]:
    if not prompts:
        return []
    task = progress.add_task(f"Generating ({label})", total=len(prompts))
    return generate_answers(model, loaded.tokenizer, loaded.spec, list(prompts), max_new_tokens=max_new_tokens,
                            batch_size=batch_size, on_batch=lambda n: progress.advance(task, n))


def latency_prompts(loaded: LoadedModel, ctx: EvaluationContext, n: int) -> list[str]:
    return [build_prompt(loaded.tokenizer, loaded.spec, r.question) for r in ctx.records[:n]]


def run_variant(model: Any, loaded: LoadedModel, ctx: EvaluationContext, cfg: MedloraConfig, progress: Progress,
                label: str) -> VariantRun:
    """Answer every sample set of ``ctx`` with ``model`` (the base, or the base with an adapter)."""
    ecfg = cfg.evaluation
    tok, spec = loaded.tokenizer, loaded.spec
    run = VariantRun(qa=_generate(loaded, model, [build_prompt(tok, spec, r.question) for r in ctx.records],
                                  ecfg.max_new_tokens, ecfg.batch_size, progress, f"{label}: questions"))
    if ctx.vignettes:
        prompts = [build_prompt(tok, spec, v.question) for v in ctx.vignettes]
        run.vignettes = _generate(loaded, model, prompts, ecfg.vignette_max_new_tokens, ecfg.batch_size,
                                  progress, f"{label}: vignettes")
        task = progress.add_task(f"Ranking diagnoses ({label})", total=len(prompts))
        for prompt, vignette in zip(prompts, ctx.vignettes, strict=True):
            run.choices.append(choose(score_options(model, tok, spec, prompt, vignette.options))
                               if vignette.options else None)
            progress.advance(task)
    if ctx.cited:
        prompts = [build_prompt(tok, spec, record.question,
                                sources=[(i, s.title, s.text) for i, s in enumerate(sources, start=1)])
                   for record, sources in ctx.cited]
        run.cited = _generate(loaded, model, prompts, ecfg.max_new_tokens, ecfg.batch_size, progress,
                              f"{label}: with sources")
    return run


def samples_of(ctx: EvaluationContext, run: VariantRun) -> dict[str, list[EvalSample]]:
    extras = {"vocabulary": ctx.vocabulary} if ctx.vocabulary is not None else {}
    return {
        "qa": [EvalSample(r, g.text, dict(extras)) for r, g in zip(ctx.records, run.qa, strict=True)],
        "vignette": [
            EvalSample(v.to_record(), g.text, {"choice": c, "answer_index": v.answer_index, "options": v.options})
            for v, g, c in zip(ctx.vignettes, run.vignettes, run.choices, strict=True)
        ],
        "cited": [EvalSample(r, g.text, {"retrieved": sources})
                  for (r, sources), g in zip(ctx.cited, run.cited, strict=True)],
    }


def score_run(ctx: EvaluationContext, run: VariantRun, metric_names: Sequence[str]) -> dict[str, float | None]:
    by_task = samples_of(ctx, run)
    return {name: get_metric(name).compute(by_task[get_metric(name).task]) for name in metric_names}


def _metric_info(metric_names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    metrics = [get_metric(n) for n in metric_names]
    return {m.name: m.label for m in metrics}, {m.name: m.display for m in metrics}


def _device_name(loaded: LoadedModel) -> str:
    if loaded.device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(loaded.device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# --- base vs one adapter ------------------------------------------------------------------------------


def evaluate_adapter(
    cfg: MedloraConfig,
    data_dir: str | Path,
    adapter_dir: str | Path,
    output_dir: str | Path,
    *,
    loaded: LoadedModel | None = None,
    vocabulary: Vocabulary | None = None,
    index: Any | None = None,
) -> EvaluationReport:
    """Evaluate base vs adapter on ``data_dir``'s test split; write reports; record the metrics in the card.

    ``vocabulary`` and ``index`` replace the cached default vocabulary and citation index (tests).
    """
    adapter_dir = Path(adapter_dir)
    loaded = loaded or load_from_config(cfg.models.llm)
    check_adapter_base(adapter_dir, loaded)
    metric_names = list(cfg.evaluation.metrics)
    for name in metric_names:
        get_metric(name)  # fail on an unknown metric before any generation
    ctx = build_context(cfg, data_dir, metric_names, vocabulary=vocabulary, index=index)
    ecfg = cfg.evaluation

    resources: dict[str, Any] = {"settings": {"answers": min(ecfg.latency_samples, len(ctx.records)),
                                              "max_new_tokens": ecfg.latency_max_new_tokens, "batch_size": 1,
                                              "device": _device_name(loaded)},
                                 "memory": {}, "notes": []}
    with Progress() as progress:
        base_run = run_variant(loaded.model, loaded, ctx, cfg, progress, "base")
        rss_before = rss_bytes()
        peft_model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
        peft_model.eval()
        resources["memory"]["rss_added_by_adapter_bytes"] = rss_bytes() - rss_before
        resources["memory"]["adapter_parameter_bytes"] = lora_parameter_bytes(peft_model)
        adapter_run = run_variant(peft_model, loaded, ctx, cfg, progress, "adapter")
        resources["memory"]["peak_rss_bytes"] = peak_rss_bytes()
        if ecfg.latency_samples > 0 and ctx.records:
            task = progress.add_task("Timing base / adapter / merged", total=None)
            resources.update(_time_variants(peft_model, loaded, ctx, cfg, resources))
            progress.update(task, total=1, completed=1)
        peft_model.unload()  # give the caller its base model back untouched
    summarise(resources)

    variants = {name: {**score_run(ctx, run, metric_names), **latency_summary(run.qa)}
                for name, run in (("base", base_run), ("adapter", adapter_run))}
    labels, displays = _metric_info(metric_names)
    manifest = load_manifest(data_dir)
    report = EvaluationReport(
        variants=variants,
        metric_labels=labels,
        metric_display=displays,
        samples=len(ctx.records),
        counts=ctx.counts,
        meta={
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "base_model": loaded.source.base_model_id,
            "adapter": adapter_dir.name,
            "specialty": ctx.specialty,
            "dataset_hash": manifest.get("dataset_hash"),
            "max_new_tokens": ecfg.max_new_tokens,
            "vignette_max_new_tokens": ecfg.vignette_max_new_tokens,
            "decoding": "greedy",
            "seed": ecfg.seed,
        },
        resources=resources,
        evaluation_data=ctx.data,
        notes=ctx.notes,
        examples=[
            {"question": r.question, "reference": r.answer, "base": b.text, "adapter": a.text}
            for r, b, a in list(zip(ctx.records, base_run.qa, adapter_run.qa, strict=True))[:5]
        ],
        vignette_examples=[
            {"vignette": v.question, "gold": v.focus, "options": v.options,
             "base_choice": v.options[bc] if bc is not None else None, "base": b.text,
             "adapter_choice": v.options[ac] if ac is not None else None, "adapter": a.text}
            for v, b, a, bc, ac in list(zip(ctx.vignettes, base_run.vignettes, adapter_run.vignettes,
                                            base_run.choices, adapter_run.choices, strict=True))[:3]
        ],
        cited_examples=[
            {"question": r.question, "sources": [s.title for s in sources], "base": b.text, "adapter": a.text}
            for (r, sources), b, a in list(zip(ctx.cited, base_run.cited, adapter_run.cited, strict=True))[:3]
        ],
    )
    report.gate = check_gate(variants, cfg.evaluation.gate.margins)
    loss_curve = adapter_dir / "loss_curve.png"
    write_reports(report.to_json(), Path(output_dir), loss_curve=loss_curve if loss_curve.is_file() else None)
    _record_in_model_card(adapter_dir, report)
    return report


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


def _record_in_model_card(adapter_dir: Path, report: EvaluationReport) -> None:
    """Add the metrics table to the adapter's metadata and card, atomically like the adapter itself."""
    data = report.to_json()
    metadata = read_metadata(adapter_dir)
    metadata["metrics"] = {
        "variants": report.variants,
        "samples": report.samples,
        "counts": report.counts,
        "dataset_hash": report.meta.get("dataset_hash"),
        "date": report.meta["date"],
        "table_markdown": render_markdown(data, include_examples=False),
        "details_markdown": "\n\n".join(p for p in (render_resources_markdown(report.resources),
                                                    render_data_markdown(report.evaluation_data)) if p),
        "evaluation_data": report.evaluation_data,
        "gate_passed": report.gate.passed if report.gate else None,
    }
    with atomic_directory(adapter_dir) as staging:
        for item in adapter_dir.iterdir():
            if item.is_file():
                (staging / item.name).write_bytes(item.read_bytes())
        write_metadata(staging, metadata)


# --- several adapters x several specialties -----------------------------------------------------------


@dataclass
class MatrixReport:
    specialties: list[str]
    cells: dict[str, dict[str, dict[str, float | None]]]  # row (base / adapter) -> specialty -> metrics
    metric_labels: dict[str, str]
    metric_display: dict[str, str]
    counts: dict[str, dict[str, int]]
    meta: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    gate: GateResult | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "specialties": self.specialties,
            "cells": self.cells,
            "metric_labels": self.metric_labels,
            "metric_display": self.metric_display,
            "lower_is_better": [m for m in self.metric_labels if not get_metric(m).higher_is_better],
            "counts": self.counts,
            "meta": self.meta,
            "notes": self.notes,
        }
        if self.gate is not None:
            data["gate"] = {"passed": self.gate.passed, "failures": self.gate.failures}
        return data


def adapter_specialty(name: str, adapter_dir: Path) -> str:
    return read_metadata(adapter_dir).get("specialty") or name


def evaluate_matrix(
    cfg: MedloraConfig,
    adapters: Mapping[str, str | Path],
    data_dirs: Mapping[str, str | Path],
    output_dir: str | Path,
    *,
    loaded: LoadedModel | None = None,
    vocabulary: Vocabulary | None = None,
    index: Any | None = None,
) -> MatrixReport:
    """Base and every adapter (rows) on every specialty's test split (columns, ``data_dirs``: specialty →
    prepared data). No latency here; the gate checks each adapter against the base on its own specialty."""
    loaded = loaded or load_from_config(cfg.models.llm)
    adapter_dirs = {name: Path(path) for name, path in adapters.items()}
    for path in adapter_dirs.values():
        check_adapter_base(path, loaded)
    metric_names = list(cfg.evaluation.metrics)
    if "cited" in tasks_of(metric_names) and cfg.evaluation.cited_answers > 0 and index is None:
        index = default_index(cfg)  # built (or loaded) once for all columns
    contexts = {s: build_context(cfg, d, metric_names, specialty=s, vocabulary=vocabulary, index=index)
                for s, d in data_dirs.items()}
    cells: dict[str, dict[str, dict[str, float | None]]] = {"base": {}}
    with Progress() as progress:
        for s, ctx in contexts.items():
            run = run_variant(loaded.model, loaded, ctx, cfg, progress, f"base on {s}")
            cells["base"][s] = score_run(ctx, run, metric_names)
        for name, path in adapter_dirs.items():
            peft_model = PeftModel.from_pretrained(loaded.model, str(path))
            peft_model.eval()
            cells[name] = {}
            for s, ctx in contexts.items():
                run = run_variant(peft_model, loaded, ctx, cfg, progress, f"{name} on {s}")
                cells[name][s] = score_run(ctx, run, metric_names)
            peft_model.unload()

    failures = []
    for name, path in adapter_dirs.items():
        own = adapter_specialty(name, path)
        if own not in contexts:
            continue
        result = check_gate({"base": cells["base"][own], "adapter": cells[name][own]}, cfg.evaluation.gate.margins)
        failures += [f"{name} on {own}: {f}" for f in result.failures]
    labels, displays = _metric_info(metric_names)
    notes = sorted({f"{s}: {n}" for s, ctx in contexts.items() for n in ctx.notes})
    matrix = MatrixReport(
        specialties=list(contexts),
        cells=cells,
        metric_labels=labels,
        metric_display=displays,
        counts={s: ctx.counts for s, ctx in contexts.items()},
        meta={"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "base_model": loaded.source.base_model_id,
              "adapters": {n: p.name for n, p in adapter_dirs.items()}, "seed": cfg.evaluation.seed,
              "max_new_tokens": cfg.evaluation.max_new_tokens, "decoding": "greedy"},
        notes=notes,
        gate=GateResult(passed=not failures, failures=failures),
    )
    write_matrix_reports(matrix.to_json(), Path(output_dir))
    return matrix
