#!/usr/bin/env python3
"""Choose the copy limit by measurement: one adapter, several decodings, scored on VALIDATION only.

Shown sources, SmolLM2 copies the first one verbatim, title and all, whether or not it answers the question
(read in the demo's predictions). :class:`medlora.models.generation.CopyLimit` caps how many consecutive prompt
tokens an answer may repeat. This script answers the validation questions closed-book and open-book with the
base and with one adapter under each limit (the same limit for both, as the bot would run them), and writes
base → adapter intervals and the adapter's open-book − closed-book ROUGE-L per limit. The test split is never
read here.

Usage::

    python bench/decoding_sweep.py --adapter data/models/lora-dermatology-demo-adapter --limits none,6,10,16

Without an adapter directory it trains one with the demo preset first (the recipe config.yaml holds).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peft import PeftModel
from common import ensure_prepared
from quality_sweep import METRICS, MODES, _cell
from rich.progress import Progress

from medlora.config import load_config
from medlora.evaluation.context import build_context
from medlora.evaluation.results import write_predictions
from medlora.evaluation.runs import compare, compare_modes, run_variant, score_run
from medlora.models.loading import load_from_config
from medlora.retrieval import configured_index
from medlora.training.trainer import train_adapter


def parse_limits(text: str) -> list[int | None]:
    return [None if item.strip().lower() == "none" else int(item) for item in text.split(",") if item.strip()]


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Validation split, {result['validation_questions']} questions; adapter `{result['adapter']}`; greedy, "
        f"max {result['settings']['max_new_tokens']} new tokens. Δ = adapter − base under the same decoding, "
        "paired-bootstrap 95 % CI. Copy limit = the longest run of prompt tokens an answer may repeat.",
        "",
        "| copy limit | base ROUGE-L closed / open | adapter ROUGE-L closed / open | ROUGE-L Δ closed | "
        "ROUGE-L Δ open | BLEU Δ open | terms Δ open (pp) | inheritance open base → adapter | "
        "adapter open − closed ROUGE-L | cites ≥1 / relevant (open) |",
        "|" + " --- |" * 10,
    ]
    for row in result["rows"]:
        iv, base, ada = row["intervals"], row["base"], row["adapter"]

        def pct(scores: dict[str, Any], key: str) -> str:
            value = scores.get(key)
            return "–" if value is None else f"{100 * value:.0f} %"

        lines.append(
            f"| {row['copy_limit'] or 'none'}{' **(chosen)**' if row['copy_limit'] == result.get('chosen') else ''} | "
            f"{base['rouge_l@closed']:.3f} / {base['rouge_l@open']:.3f} | "
            f"{ada['rouge_l@closed']:.3f} / {ada['rouge_l@open']:.3f} | {_cell(iv.get('rouge_l@closed'))} | "
            f"{_cell(iv.get('rouge_l@open'))} | {_cell(iv.get('bleu@open'))} | "
            f"{_cell(iv.get('terminology_recall@open'), True)} | "
            f"{pct(base, 'inheritance_accuracy@open')} → {pct(ada, 'inheritance_accuracy@open')} | "
            f"{_cell(row['adapter_open_minus_closed'])} | "
            f"{pct(ada, 'citation_coverage@open')} / {pct(ada, 'citation_relevance@open')} |")
    return "\n".join(lines) + "\n"


def selection_score(row: dict[str, Any]) -> float:
    """The adapter's own mean ROUGE-L over both modes.

    Not the base → adapter delta the recipe sweep ranks by: a decoding applies to the base too, and one that
    only makes the base worse would win on the delta while every user gets worse answers.
    """
    return float((row["adapter"]["rouge_l@closed"] + row["adapter"]["rouge_l@open"]) / 2)


def rerender(out: str) -> None:
    """Re-rank and re-render a results file (after a change to the ranking rule)."""
    out_json = Path(f"{out}.json")
    result = json.loads(out_json.read_text(encoding="utf-8"))
    for row in result["rows"]:
        row["selection_score"] = selection_score(row)
    result["chosen"] = max(result["rows"], key=lambda r: r["selection_score"])["copy_limit"]
    out_json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    Path(f"{out}.md").write_text(render_markdown(result), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--adapter", default="data/models/lora-dermatology-demo-adapter")
    parser.add_argument("--limits", default="none,6,10,16")
    parser.add_argument("--val-samples", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", default="bench/results/decoding_sweep")
    parser.add_argument("--predictions", default="reports/validation/decoding_sweep",
                        help="where every validation answer goes, one JSONL per limit (git-ignored: quotes the data)")
    parser.add_argument("--render-only", action="store_true", help="re-rank and re-render --out, run nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.render_only:
        rerender(args.out)
        return

    cfg = load_config(args.config, preset="demo").with_overrides({
        "evaluation.max_samples": args.val_samples, "evaluation.max_new_tokens": args.max_new_tokens,
        "evaluation.metrics": METRICS, "evaluation.modes": MODES, "evaluation.vignettes": 0})
    data_dir = ensure_prepared(cfg, "dermatology")
    adapter = Path(args.adapter)
    loaded = load_from_config(cfg.models.llm)
    if not (adapter / "adapter_config.json").is_file():
        train_adapter(cfg, data_dir, adapter, loaded=load_from_config(cfg.models.llm))
    ctx = build_context(cfg, data_dir, METRICS, index=configured_index(cfg), split="validation")
    budget = {"max_new_tokens": cfg.evaluation.max_new_tokens, "vignette_max_new_tokens": 1,
              "batch_size": cfg.evaluation.batch_size}
    resamples, seed = cfg.evaluation.bootstrap_resamples, cfg.evaluation.seed
    peft_model = PeftModel.from_pretrained(loaded.model, str(adapter))
    peft_model.eval()
    out_json, out_md = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "adapter": adapter.name,
                              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "config")},
                              "validation_questions": len(ctx.records), "rows": []}
    for limit in parse_limits(args.limits):
        with Progress() as progress, peft_model.disable_adapter():
            base = run_variant(peft_model, loaded, ctx, progress=progress, label=f"base, limit {limit}",
                               copy_limit=limit, **budget)
        with Progress() as progress:
            tuned = run_variant(peft_model, loaded, ctx, progress=progress, label=f"adapter, limit {limit}",
                                copy_limit=limit, **budget)
        predictions = Path(args.predictions)
        predictions.mkdir(parents=True, exist_ok=True)
        write_predictions(predictions / f"limit-{limit or 'none'}.jsonl", ctx, {"base": base, "adapter": tuned})
        gain = compare_modes(ctx, tuned, "rouge_l", "open", "closed", resamples=resamples, seed=seed)
        row: dict[str, Any] = {
               "copy_limit": limit, "base": score_run(ctx, base, METRICS), "adapter": score_run(ctx, tuned, METRICS),
               "intervals": {k: v.to_json() for k, v in
                             compare(ctx, base, tuned, METRICS, resamples=resamples, seed=seed).items()},
               "adapter_open_minus_closed": gain.to_json() if gain else None,
               "examples": [{"question": r.question, "base": b.text, "adapter": a.text}
                            for r, b, a in zip(ctx.records[:5], base.answers["open"][:5], tuned.answers["open"][:5],
                                               strict=True)]}
        row["selection_score"] = selection_score(row)
        result["rows"].append(row)
        result["chosen"] = max(result["rows"], key=lambda r: r["selection_score"])["copy_limit"]
        out_json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        out_md.write_text(render_markdown(result), encoding="utf-8")
        print(f"limit {limit}: ROUGE-L closed {_cell(row['intervals'].get('rouge_l@closed'))}, "
              f"open {_cell(row['intervals'].get('rouge_l@open'))}, adapter open − closed "
              f"{_cell(row['adapter_open_minus_closed'])}", flush=True)
    print(f"chosen: {result.get('chosen')}; results in {out_json} and {out_md}")


if __name__ == "__main__":
    main()
