#!/usr/bin/env python3
"""Which base model answers French questions better: SmolLM2-135M-Instruct or the multilingual Gemma 3 270M?

Both bases answer the same French dermatology questions closed-book (no sources, no adapter), through medlora's
own prompt builder and generation path (greedy, the same ``--max-new-tokens``), and are scored per base on:

- the share of answers written in French (``language_match_fr``: py3langid, as the evaluation does),
- ROUGE-L against the references (``rouge_l``: rouge-score, as the evaluation does),
- mean new tokens per answer and seconds per answer (wall time of the batches / answers),

with paired bootstrap intervals for gemma − SmolLM2 on the same questions. The questions come from the prepared
``dermatology-fr`` set: its validation split first, then (``--splits validation,train``) its training split to
reach ``--n``. The test split is never read. Only aggregate numbers are written (no question or answer text).

``embedded:gemma3-270m`` is under the Gemma Terms of Use: pass ``--accept-gemma-terms`` (or set
MEDLORA_ACCEPT_GEMMA_TERMS=1) after reading them, or the run stops with a message saying where they are.

Usage::

    python bench/french_base.py --accept-gemma-terms            # results in bench/results/french_base.*
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from common import ensure_prepared

from medlora.config import load_config
from medlora.data.language import detect_language
from medlora.data.prepare import load_manifest, load_split
from medlora.data.records import QARecord
from medlora.evaluation.bootstrap import paired_bootstrap
from medlora.evaluation.metrics import get_metric
from medlora.evaluation.metrics.base import EvalSample
from medlora.models.generation import generate_answers
from medlora.models.loading import load_base_model
from medlora.models.prompts import build_prompt

SPECIALTY = "dermatology-fr"
BASES = {"smollm2": "embedded:smollm2-135m-instruct", "gemma3": "embedded:gemma3-270m"}
METRICS = ("language_match_fr", "rouge_l")
# A pretrained model given "Question: ...\nAnswer:" tends to go on with a new "Question:" line (medlora has no
# stop sequence); the loop stop then cuts the repeated tail, but a first echo can stay. The "cut" figures score
# each answer up to such a line: what a stop sequence would give, as a check that the echo is not what scores.
ECHO = re.compile(r"\n\s*(Question|Answer)\s*:")


def cut_at_echo(text: str) -> str:
    return ECHO.split(text, maxsplit=1)[0].strip()


def pick_questions(data_dir: Path, splits: list[str], n: int) -> list[tuple[str, QARecord]]:
    if "test" in splits:
        raise SystemExit("the test split is kept for the final evaluation: choose validation and/or train")
    picked: list[tuple[str, QARecord]] = []
    for split in splits:
        picked += [(split, record) for record in load_split(data_dir, split)][: n - len(picked)]
    return picked


def answer(name: str, questions: list[QARecord], args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    loaded = load_base_model(name, accept_terms=args.accept_gemma_terms, device=torch.device("cpu"))
    load_seconds = time.perf_counter() - started
    prompts = [build_prompt(loaded.tokenizer, loaded.spec, q.question) for q in questions]
    started = time.perf_counter()
    generations = generate_answers(loaded.model, loaded.tokenizer, loaded.spec, prompts,
                                   max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    return {
        "name": name,
        "upstream": loaded.source.base_model_id,
        "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "load_seconds": load_seconds,
        "seconds": seconds,
        "generations": generations,
    }


def summarise(samples: list[EvalSample]) -> dict[str, Any]:
    """Aggregates only. ``seconds_per_answer``: each answer's share of its batch's wall time, averaged."""
    generations = [s.extras["generation"] for s in samples]
    languages = Counter(detect_language(s.prediction) for s in samples)
    cut = [EvalSample(s.record, cut_at_echo(s.prediction)) for s in samples]
    return {
        "n": len(samples),
        **{metric: get_metric(metric).compute(samples) for metric in METRICS},
        **{f"{metric}_cut": get_metric(metric).compute(cut) for metric in METRICS},
        "echo": sum(bool(ECHO.search(s.prediction)) for s in samples) / len(samples),
        "answer_languages": dict(languages.most_common()),
        "mean_new_tokens": sum(g.new_tokens for g in generations) / len(generations),
        "loop_stopped": sum(g.loop_stopped for g in generations) / len(generations),
        "seconds_per_answer": sum(g.seconds for g in generations) / len(generations),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = ensure_prepared(load_config(args.config), SPECIALTY)
    picked = pick_questions(data_dir, args.splits.split(","), args.n)
    questions = [record for _, record in picked]
    runs: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[EvalSample]] = {}
    for key in args.bases.split(","):
        result = answer(BASES[key], questions, args)
        runs[key] = result
        samples[key] = [EvalSample(record, g.text, {"generation": g, "split": split})
                        for (split, record), g in zip(picked, result["generations"], strict=True)]
        logging.warning("%s: %d answers in %.0f s", key, len(questions), result["seconds"])
        for sample in samples[key][: args.show]:
            print(f"--- {key} [{detect_language(sample.prediction)}] {sample.record.question}\n{sample.prediction}")

    splits = sorted({split for split, _ in picked}, key=args.splits.split(",").index)
    bases: dict[str, Any] = {}
    for key, result in runs.items():
        bases[key] = {
            "model": result["name"], "upstream": result["upstream"], "parameters": result["parameters"],
            "prompt": "chat template" if result["chat_template"] else "plain 'Question: ...\\nAnswer:'",
            "load_seconds": round(result["load_seconds"], 1),
            "all": summarise(samples[key]),
            "by_split": {split: summarise([s for s in samples[key] if s.extras["split"] == split])
                         for split in splits},
        }
    deltas: dict[str, Any] = {}
    if {"smollm2", "gemma3"} <= runs.keys():
        cut = {key: [EvalSample(s.record, cut_at_echo(s.prediction)) for s in samples[key]] for key in samples}
        for metric in METRICS:
            for suffix, pair in (("", samples), (" (cut)", cut)):
                delta = paired_bootstrap(get_metric(metric), pair["smollm2"], pair["gemma3"], seed=args.seed)
                deltas[f"{metric}{suffix} gemma3 - smollm2"] = delta.to_json() if delta else None
    manifest = load_manifest(data_dir)
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "specialty": SPECIALTY,
        "dataset_hash": manifest.get("dataset_hash"),
        "questions": {split: sum(s == split for s, _ in picked) for split in splits},
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "decoding": "greedy, medlora.models.generation.generate_answers (loop stop on, no copy limit)",
        "torch_threads": torch.get_num_threads(),
        "bases": bases,
        "paired_bootstrap_95": deltas,
    }


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"


def render_markdown(result: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {split}" for split, n in result["questions"].items())
    lines = [
        "# French base models: SmolLM2-135M-Instruct vs Gemma 3 270M (closed-book)",
        "",
        f"Measured {result['measured']} by `bench/french_base.py` on the prepared `{result['specialty']}` set "
        f"(dataset {result['dataset_hash']}): {counts} questions (the test split is never read), "
        f"{result['decoding']}, max {result['max_new_tokens']} new tokens, batches of {result['batch_size']}, "
        f"{result['torch_threads']} torch thread(s).",
        "",
        "| base | prompt | questions | answers in French | ROUGE-L | ROUGE-L (cut) | echoes a Question/Answer line "
        "| mean new tokens | loop-stopped | s / answer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for base in result["bases"].values():
        rows = [("all", base["all"])] + (list(base["by_split"].items()) if len(base["by_split"]) > 1 else [])
        for label, s in rows:
            lines.append(
                f"| {base['model']}{'' if label == 'all' else f' ({label} only)'} | {base['prompt']} | {s['n']} | "
                f"{_fmt(s['language_match_fr'], True)} | {_fmt(s['rouge_l'])} | {_fmt(s['rouge_l_cut'])} | "
                f"{_fmt(s['echo'], True)} | {s['mean_new_tokens']:.1f} | "
                f"{_fmt(s['loop_stopped'], True)} | {s['seconds_per_answer']:.2f} |")
    lines += ["", "ROUGE-L (cut): each answer scored up to a line starting with `Question:` or `Answer:`, which a "
              "pretrained model writes when it goes on past its answer (medlora has no stop sequence).", "",
              "Answer languages (py3langid, all questions): " + "; ".join(
        f"{key}: " + ", ".join(f"{lang} {n}" for lang, n in base["all"]["answer_languages"].items())
        for key, base in result["bases"].items())]
    if result["paired_bootstrap_95"]:
        lines += ["", "| paired difference (same questions) | Δ | 95 % interval |", "| --- | --- | --- |"]
        for name, d in result["paired_bootstrap_95"].items():
            if d is None:
                continue
            scale, digits, unit = (100, 1, " pp") if name.startswith("language") else (1, 3, "")
            low, delta, high = (f"{scale * d[k]:+.{digits}f}" for k in ("low", "delta", "high"))
            lines.append(f"| {name} | {delta}{unit} | [{low}, {high}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="config.yaml for data settings (default: the defaults)")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--splits", default="validation,train", help="validation and/or train, in order")
    parser.add_argument("--bases", default="smollm2,gemma3")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accept-gemma-terms", action="store_true",
                        help="accept the Gemma Terms of Use (https://ai.google.dev/gemma/terms) to load gemma3-270m")
    parser.add_argument("--show", type=int, default=0, help="print this many answers per base (never saved)")
    parser.add_argument("--out", default="bench/results/french_base")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{args.out}.md").write_text(render_markdown(result), encoding="utf-8")
    print(render_markdown(result))


if __name__ == "__main__":
    main()
