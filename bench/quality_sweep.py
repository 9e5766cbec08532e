#!/usr/bin/env python3
"""Choose the training recipe by measurement: train variants on the train split, score them on VALIDATION.

Every variant trains on the same seeded training examples of the prepared dermatology split and is scored on
the validation split only (the test split is never read here), base vs adapter, paired by question, in the
closed-book and open-book modes, plus the checks outside the specialty (another specialty's validation
questions and yes/no reading checks over abstracts). The base is answered once and shared by all variants.

The winner is the variant whose *worse* ROUGE-L lower bound (closed-book or open-book) is highest, among the
variants that are not measurably worse on terminology or outside the specialty; docs/RESULTS.md explains it.

Usage::

    python bench/quality_sweep.py                    # all variants, results in bench/results/quality_sweep.*
    python bench/quality_sweep.py --variants all-linear-r16,note-qv-r8 --train-samples 160

Results are written after every variant, so an interrupted sweep keeps what it measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import ensure_prepared
from peft import PeftModel
from rich.progress import Progress

from medlora.config import MedloraConfig, load_config
from medlora.evaluation.context import build_context, cache_dir
from medlora.evaluation.results import write_predictions
from medlora.evaluation.forgetting import OutsideSet, build_outside, run_outside, score_outside
from medlora.evaluation.runs import VariantRun, compare, compare_modes, run_variant, score_run
from medlora.models.generation import Generation
from medlora.models.loading import load_from_config
from medlora.retrieval import configured_index
from medlora.training.distill import REPLAY_PROMPTS
from medlora.training.trainer import train_adapter

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
QV = ["q_proj", "v_proj"]

# Shared parts of the variants below: each variant names only what it changes.
QV_R8 = {"training.target_modules": QV, "training.lora_r": 8, "training.lora_alpha": 32}
R16 = {"training.lora_r": 16, "training.lora_alpha": 32}
ALL_LINEAR_R16 = {"training.target_modules": ALL_LINEAR, **R16}
GROUNDED = {"training.grounded_fraction": 0.6}
TOP15 = {**ALL_LINEAR_R16, "training.learning_rate": 1e-3, **GROUNDED, "training.lora_top_layers": 15}
LEAD = {**TOP15, "training.related_only_fraction": 0.8, "training.distractor_only_fraction": 0.1,
        "training.citation_style": "lead"}

# A training.replay_prompts value the sweep replaces with a file holding only the shipped file's `general`
# questions (no study summaries in the reading check's format), written into the sweep's scratch directory.
GENERAL_ONLY = "<general questions of the shipped replay prompts>"


def _with_replay_file(overrides: dict[str, Any], scratch: Path) -> dict[str, Any]:
    if overrides.get("training.replay_prompts") != GENERAL_ONLY:
        return overrides
    shipped = yaml.safe_load(REPLAY_PROMPTS.read_text(encoding="utf-8"))
    path = scratch / "replay_prompts_general.yaml"
    path.write_text(yaml.safe_dump({"general": shipped["general"]}, allow_unicode=True), encoding="utf-8")
    return {**overrides, "training.replay_prompts": str(path)}


def _replay(weight: float, rows: int, tokens: int, **extra: Any) -> dict[str, Any]:
    """The chosen recipe (round 5's winner) with distillation replay toward the base."""
    return {**LEAD, "training.source_order": "retrieval", "training.learning_rate": 2e-3,
            "training.replay_kl_weight": weight, "training.replay_rows": rows, "training.replay_tokens": tokens,
            **extra}


# name -> config overrides. The first is the original note's recipe (closed-book training only).
VARIANTS: dict[str, dict[str, Any]] = {
    "note-qv-r8": {**QV_R8, "training.learning_rate": 3e-4, "training.grounded_fraction": 0.0},
    "qv-r8-grounded": {**QV_R8, "training.learning_rate": 3e-4, **GROUNDED},
    "all-linear-r16": {**ALL_LINEAR_R16, "training.learning_rate": 5e-4, **GROUNDED},
    "all-linear-r16-closed": {**ALL_LINEAR_R16, "training.learning_rate": 5e-4, "training.grounded_fraction": 0.0},
    "all-linear-r16-lr1e-3": {**ALL_LINEAR_R16, "training.learning_rate": 1e-3, **GROUNDED},
    "attention-r16": {"training.target_modules": ATTENTION, **R16, "training.learning_rate": 5e-4, **GROUNDED},
    "all-linear-r32": {"training.target_modules": ALL_LINEAR, "training.lora_r": 32, "training.lora_alpha": 64,
                       "training.learning_rate": 5e-4, **GROUNDED},
    "all-linear-r16-top15": {**ALL_LINEAR_R16, "training.learning_rate": 5e-4, **GROUNDED,
                             "training.lora_top_layers": 15},
    "all-linear-r16-top15-lr1e-3-n320": {**TOP15, "training.max_train_samples": 320},
    "top15-lr1e-3": TOP15,
    "top15-lr1e-3-distractors0.5": {**TOP15, "training.distractor_only_fraction": 0.5},
    "top15-lr1e-3-closed": {**TOP15, "training.grounded_fraction": 0.0},
    "top15-lr2e-3": {**TOP15, "training.learning_rate": 2e-3},
    "top15-lr1e-3-related0.8": {**TOP15, "training.related_only_fraction": 0.8},
    "top15-lr1e-3-lead": LEAD,
    "top15-lr1e-3-lead-grounded0.9": {**LEAD, "training.grounded_fraction": 0.9},
    "top15-lr1e-3-lead-related1.0": {**LEAD, "training.related_only_fraction": 1.0},
    "top15-lr1e-3-lead-overlap0.5": {**LEAD, "training.max_source_overlap": 0.5},
    "top15-lr1e-3-lead-overlap0.5-grounded0.9": {**LEAD, "training.max_source_overlap": 0.5,
                                                 "training.grounded_fraction": 0.9},
    "top15-lr1e-3-grounded0.9": {**TOP15, "training.grounded_fraction": 0.9},
    "top15-lr1e-3-lead-len448": {**LEAD, "training.max_length": 448},
    "lead-retrieval-order": {**LEAD, "training.source_order": "retrieval"},
    "lead-retrieval-order-lr2e-3": {**LEAD, "training.source_order": "retrieval", "training.learning_rate": 2e-3},
    "lead-retrieval-order-lr2e-3-bot-sources": {**LEAD, "training.source_order": "retrieval",
                                                "training.learning_rate": 2e-3, "training.min_source_match": 0.5},
    "sentence-retrieval-order-lr2e-3": {**LEAD, "training.source_order": "retrieval", "training.learning_rate": 2e-3,
                                        "training.citation_style": "sentence"},
    "all-linear-r16-grounded0.9": {**ALL_LINEAR_R16, "training.learning_rate": 5e-4,
                                   "training.grounded_fraction": 0.9},
    # Round 11: distillation replay toward the base (medlora.training.distill) on the chosen recipe.
    "lead-retrieval-order-lr2e-3-kl1": _replay(1.0, rows=2, tokens=16),
    "lead-retrieval-order-lr2e-3-kl4-t4": _replay(4.0, rows=1, tokens=4),
    "lead-retrieval-order-lr2e-3-kl4-t4-clip1": _replay(4.0, rows=1, tokens=4, **{"training.max_grad_norm": 1.0}),
    "lead-retrieval-order-lr2e-3-kl4-t0": _replay(4.0, rows=1, tokens=0),
    # Round 12: an intermediate weight, and replay prompts that do not mirror the reading check's format.
    "lead-retrieval-order-lr2e-3-kl2-t0": _replay(2.0, rows=1, tokens=0),
    "lead-retrieval-order-lr2e-3-kl4-t0-general": _replay(4.0, rows=1, tokens=0,
                                                          **{"training.replay_prompts": GENERAL_ONLY}),
}
METRICS = ["bleu", "rouge_l", "terminology_recall", "inheritance_accuracy", "looping_answers",
           "citation_relevance", "citation_coverage", "citations_invented"]
MODES = ["closed", "open"]


# What a variant does not set: the settings of the first sweep, so every row means the same thing whatever
# config.yaml's defaults are now (30 = every layer of SmolLM2-135M).
SWEEP_BASELINE: dict[str, Any] = {
    "training.lora_targets": "qv", "training.lora_top_layers": 30, "training.grounded_fraction": 0.6,
    "training.distractor_only_fraction": 0.2, "training.related_only_fraction": 0.5,
    "training.citation_style": "sentence", "training.learning_rate": 5e-4, "training.lora_r": 16,
    "training.lora_alpha": 32, "training.max_source_overlap": 1.0, "training.source_order": "shuffled",
    "training.min_source_match": 0.0,
}


def base_config(args: argparse.Namespace) -> MedloraConfig:
    return load_config(args.config).with_overrides(SWEEP_BASELINE).with_overrides({
        "training.epochs": args.epochs,
        "training.max_train_samples": args.train_samples,
        "training.max_eval_samples": 32,
        "training.max_length": args.max_length,
        "training.logging_steps": 4,
        "training.save_steps": 10_000,
        "evaluation.max_samples": args.val_samples,
        "evaluation.max_new_tokens": args.max_new_tokens,
        "evaluation.metrics": METRICS,
        "evaluation.modes": MODES,
        "evaluation.vignettes": 0,
        "evaluation.outside_samples": args.outside_samples,
        "evaluation.reading_checks": args.reading_checks,
    })


def summarise_variant(name: str, overrides: dict[str, Any], train: Any, scores: dict[str, dict[str, Any]],
                      intervals: dict[str, Any], checks: dict[str, Any], outside: dict[str, Any]) -> dict[str, Any]:
    return {
        "variant": name,
        "overrides": overrides,
        "train_seconds": round(train.seconds, 1),
        "train_tokens_per_s": round(train.train_tokens / max(train.seconds, 1e-9), 1),
        "validation_loss": train.eval_loss,
        "trainable_params": train.trainable_params,
        "scores": scores,
        "intervals": {k: v.to_json() for k, v in intervals.items()},
        "checks": checks,
        "outside": outside,
    }


def selection_score(row: dict[str, Any]) -> float:
    """The worse of the closed- and open-book ROUGE-L lower bounds; -inf when a guard fails."""
    iv = row["intervals"]
    for key in ("terminology_recall@closed", "terminology_recall@open"):
        if key in iv and iv[key]["high"] < 0:
            return float("-inf")
    if any(r.get("interval") and r["interval"]["high"] < 0 for r in row["outside"].values()):
        return float("-inf")
    return min(iv.get("rouge_l@closed", {}).get("low", float("-inf")),
               iv.get("rouge_l@open", {}).get("low", float("-inf")))


def _cell(iv: dict[str, Any] | None, percent: bool = False) -> str:
    if not iv:
        return "–"
    f = (lambda x: f"{100 * x:+.1f}") if percent else (lambda x: f"{x:+.3f}")
    return f"{f(iv['delta'])} [{f(iv['low'])}, {f(iv['high'])}]"


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Validation split, {result['settings']['val_samples']} questions, closed-book and open-book; "
        f"{result['settings']['train_samples']} training examples, {result['settings']['epochs']} epoch(s), "
        f"max length {result['settings']['max_length']}; Δ = adapter − base with paired-bootstrap 95 % CI "
        f"(ROUGE-L/BLEU in score units, others in percentage points). Base: ROUGE-L closed "
        f"{result['base']['rouge_l@closed']:.3f}, open {result['base']['rouge_l@open']:.3f}.",
        "",
        "| variant | train s | val loss | ROUGE-L Δ closed | ROUGE-L Δ open | BLEU Δ closed | BLEU Δ open | "
        "terms Δ closed (pp) | terms Δ open (pp) | loops closed/open | cites ≥1 / relevant (open) | "
        "outside: reading Δ (pp) | outside: other specialty ROUGE-L Δ |",
        "|" + " --- |" * 13,
    ]
    for row in result["variants"]:
        iv, sc = row["intervals"], row["scores"]["adapter"]
        outside = row["outside"]
        reading = outside.get("reading_check_accuracy", {}).get("interval")
        other = next((r.get("interval") for k, r in outside.items() if k.startswith("rouge_l@")), None)

        def pct(key: str) -> str:
            value = sc.get(key)  # noqa: B023 - pct is called only within this iteration
            return "–" if value is None else f"{100 * value:.0f} %"

        lines.append(
            f"| {row['variant']}{' **(chosen)**' if row['variant'] == result.get('chosen') else ''} | "
            f"{row['train_seconds']:.0f} | {row['validation_loss']:.3f} | {_cell(iv.get('rouge_l@closed'))} | "
            f"{_cell(iv.get('rouge_l@open'))} | {_cell(iv.get('bleu@closed'))} | {_cell(iv.get('bleu@open'))} | "
            f"{_cell(iv.get('terminology_recall@closed'), True)} | {_cell(iv.get('terminology_recall@open'), True)} | "
            f"{pct('looping_answers@closed')} / {pct('looping_answers@open')} | "
            f"{pct('citation_coverage@open')} / {pct('citation_relevance@open')} | {_cell(reading, True)} | "
            f"{_cell(other)} |")
    return "\n".join(lines) + "\n"


def _fingerprint(args: argparse.Namespace, data_dir: Path, shown: str) -> str:
    """Settings, data and the sources every question is shown: the base's answers depend on all three."""
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "variants")}
    manifest = (data_dir / "manifest.json").read_text(encoding="utf-8")
    payload = json.dumps(settings, sort_keys=True).encode() + manifest.encode() + shown.encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def _shown_sources(ctx: Any) -> str:
    """Which sources, with which text, every question is shown (the snippet length changes the text alone)."""
    return hashlib.sha256(json.dumps({m: [[[s.source_id, s.text] for s in shown] for shown in per_record]
                                      for m, per_record in ctx.modes.items()}, sort_keys=True).encode()).hexdigest()


def _save_base(path: Path, run: VariantRun, outside: OutsideSet) -> None:
    """The base's answers, so later sweeps with the same settings and data do not regenerate them."""
    data = {"answers": {m: [asdict(g) for g in gens] for m, gens in run.answers.items()},
            "outside": {s: {m: [asdict(g) for g in gens] for m, gens in r.answers.items()}
                        for s, r in outside.answers["base"].items()},
            "choices": outside.choices.get("base", []), "margins": outside.margins.get("base", [])}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _load_base(path: Path, outside: OutsideSet) -> VariantRun | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    outside.answers["base"] = {s: VariantRun(answers={m: [Generation(**g) for g in gens] for m, gens in r.items()})
                               for s, r in data["outside"].items()}
    outside.choices["base"] = data["choices"]
    if data.get("margins"):  # caches written before margins were kept have none: no AUC then
        outside.margins["base"] = data["margins"]
    return VariantRun(answers={m: [Generation(**g) for g in gens] for m, gens in data["answers"].items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--train-samples", type=int, default=320)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=320)
    parser.add_argument("--val-samples", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--outside-samples", type=int, default=20)
    parser.add_argument("--reading-checks", type=int, default=30)
    parser.add_argument("--out", default="bench/results/quality_sweep")
    parser.add_argument("--predictions", default="reports/validation/quality_sweep",
                        help="where every validation answer goes, one JSONL per variant (git-ignored: it quotes "
                             "the data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    cfg = base_config(args)
    data_dir = ensure_prepared(cfg, "dermatology")
    ensure_prepared(cfg, "cardiology")
    loaded = load_from_config(cfg.models.llm)
    index = configured_index(cfg)
    ctx = build_context(cfg, data_dir, METRICS, index=index, split="validation")
    outside = build_outside(cfg, "dermatology", index, split="validation")
    budget = {"max_new_tokens": cfg.evaluation.max_new_tokens, "vignette_max_new_tokens": 1,
              "batch_size": cfg.evaluation.batch_size}
    resamples, seed = cfg.evaluation.bootstrap_resamples, cfg.evaluation.seed
    out_json, out_md = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "config", "variants")},
                     "sources_shown": _shown_sources(ctx)[:16]},
        "citation_index": ctx.data.get("citation_index"),
        "validation_questions": len(ctx.records), "variants": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="medlora-sweep-"))
    cache = cache_dir(cfg) / f"sweep-base-{_fingerprint(args, data_dir, _shown_sources(ctx))}.json"
    base_run = _load_base(cache, outside)
    if base_run is None:
        with Progress() as progress:
            base_run = run_variant(loaded.model, loaded, ctx, progress=progress, label="base", **budget)
            run_outside(outside, "base", loaded.model, loaded, cfg, progress)
        _save_base(cache, base_run, outside)
    result["base"] = score_run(ctx, base_run, METRICS)
    if out_json.is_file():  # keep what earlier runs with the same settings measured
        earlier = json.loads(out_json.read_text(encoding="utf-8"))
        if earlier.get("settings") == result["settings"]:
            result["variants"] = [r for r in earlier.get("variants", []) if r["variant"] not in wanted]
    try:
        for name in wanted:
            overrides = VARIANTS[name]
            vcfg = cfg.with_overrides(_with_replay_file(overrides, scratch))
            started = time.perf_counter()
            train = train_adapter(vcfg, data_dir, scratch / name, loaded=load_from_config(vcfg.models.llm))
            peft_model = PeftModel.from_pretrained(loaded.model, str(scratch / name))
            peft_model.eval()
            with Progress() as progress:
                run = run_variant(peft_model, loaded, ctx, progress=progress, label=name, **budget)
                run_outside(outside, "adapter", peft_model, loaded, cfg, progress)
            peft_model.unload()
            predictions = Path(args.predictions)
            predictions.mkdir(parents=True, exist_ok=True)
            write_predictions(predictions / f"{name}.jsonl", ctx, {"base": base_run, name: run})
            intervals = compare(ctx, base_run, run, METRICS, resamples=resamples, seed=seed)
            open_gain = compare_modes(ctx, run, "rouge_l", "open", "closed", resamples=resamples, seed=seed)
            checks = {"adapter_rouge_l_open_minus_closed": open_gain.to_json() if open_gain else None,
                      "loop_stopped": {m: sum(g.loop_stopped for g in gens) for m, gens in run.answers.items()},
                      "wall_seconds": round(time.perf_counter() - started, 1)}
            row = summarise_variant(name, overrides, train,
                                    {"adapter": score_run(ctx, run, METRICS)}, intervals, checks,
                                    score_outside(outside, resamples, seed))
            row["selection_score"] = selection_score(row)
            result["variants"].append(row)
            ranked = [r for r in result["variants"] if r["selection_score"] > float("-inf")]
            result["chosen"] = max(ranked, key=lambda r: r["selection_score"])["variant"] if ranked else None
            out_json.write_text(json.dumps(result, indent=2), encoding="utf-8")
            out_md.write_text(render_markdown(result), encoding="utf-8")
            print(f"{name}: ROUGE-L closed {_cell(row['intervals'].get('rouge_l@closed'))}, "
                  f"open {_cell(row['intervals'].get('rouge_l@open'))}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"chosen: {result.get('chosen')}; results in {out_json} and {out_md}")


if __name__ == "__main__":
    main()
