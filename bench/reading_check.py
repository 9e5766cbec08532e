#!/usr/bin/env python3
"""Forgetting, measured with power: the yes/no reading check over medical abstracts, on many items.

The evaluation's reading check (``medlora/evaluation/forgetting.py``) asks "Is this abstract about <class>?" and
scores "Yes" vs "No" by log-likelihood. The demo ran 30 of them, and the base model reads them at chance, so a
paired interval on 30 items spans about +-20 pp: the same recipe landed 8 pp apart in two runs, and round 9's demo
adapter failed its gate at -13.3 pp [-26.7, -3.3]. This bench answers the same kind of check on ``--n`` items
drawn with another seed (not the demo's items), for the base and each adapter given, with paired 95 % bootstrap
intervals, so adapters can be compared on the same items.

Beside accuracy it reports what accuracy hides on a check the base reads at chance: each model's share of "Yes"
answers, the share of the base's answers an adapter changes, and the **AUC** of the "Yes" minus "No"
log-likelihood against the truth — a threshold-free measure of reading (0.5 = none), so a model that only says
"No" more often keeps its AUC. ``--scales`` also scores each adapter with its learned update scaled (LoRA's
scaling times the factor: a point on the straight line from the base to the adapter in weight space, as WiSE-FT
interpolates), to see whether a weaker adapter keeps the base's answers. Writes ``<out>.{json,md}`` (default
``bench/results/reading_check``).

The checks are drawn topic-balanced, as the evaluation draws them since round 13 (every topic asked as often on
yes as on no items); ``--own-or-random`` draws them as rounds 9 to 12 did, and ``--rescore`` re-builds the draw a
stored result names (files without the field are rounds 9 to 12's).

Usage::

    python bench/reading_check.py --n 300 --seed 1 data/models/lora-dermatology-demo-adapter ...
    python bench/reading_check.py --scales 1,0.7,0.5 data/models/lora-dermatology-demo-adapter
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import bootstrap_interval

from medlora.adapters.checks import load_lora
from medlora.config import load_config
from medlora.evaluation.context import data_path
from medlora.evaluation.forgetting import (
    OPTIONS,
    auc_delta_interval,
    auc_interval,
    build_reading_checks,
    changed_share,
    yes_rate,
)
from medlora.evaluation.likelihood import OptionScore, choose, score_options
from medlora.models.loading import load_from_config
from medlora.models.prompts import build_prompt

RESULTS = Path(__file__).parent / "results" / "reading_check"


def set_lora_scale(model: Any, factor: float, adapter: str = "default") -> None:
    """Scale every LoRA layer's update to ``factor`` times its trained strength (lora_alpha / r)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_scale(adapter, factor)


def topic_centred(margins: Sequence[float], topics: Sequence[str]) -> list[float]:
    """Each margin minus the mean margin of checks asking about the same topic. In rounds 9 to 12's draw yes
    items ask about the abstract's own class and no items about another, in other proportions, so a model that
    only says "Yes" more to some topics moves the plain AUC; centred, its AUC is 0.5 and what is left is reading
    within a topic. (The topic-balanced draw asks each topic equally often on both sides, so there the two AUCs
    differ only by noise.)"""
    by_topic: dict[str, list[float]] = {}
    for margin, topic in zip(margins, topics, strict=True):
        by_topic.setdefault(topic, []).append(margin)
    means = {topic: sum(values) / len(values) for topic, values in by_topic.items()}
    return [margin - means[topic] for margin, topic in zip(margins, topics, strict=True)]


def summarize(scores: dict[str, list[list[float]]], truth: list[int], seed: int,
              topics: Sequence[str] | None = None) -> dict[str, Any]:
    """``scores[model][i]`` = the [Yes, No] log-likelihoods of check i; ``truth[i]`` = 0 for yes, 1 for no;
    ``topics[i]`` = the class check i asks about (adds the topic-centred AUC)."""
    choices = {name: [choose([OptionScore(value, len(option)) for value, option in zip(pair, OPTIONS, strict=True)])
                      for pair in rows] for name, rows in scores.items()}
    correct = {name: [float(c == t) for c, t in zip(picked, truth, strict=True)] for name, picked in choices.items()}
    margin = {name: [y - n for y, n in rows] for name, rows in scores.items()}

    def describe(name: str) -> dict[str, Any]:
        row = {"accuracy": sum(correct[name]) / len(truth),
               "yes_rate": yes_rate(choices[name]),
               "auc": auc_interval(margin[name], truth)}
        if topics is not None:
            row["topic_centred_auc"] = auc_interval(topic_centred(margin[name], topics), truth)
        return row

    base = correct["base"]
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "checks": len(truth), "seed": seed,
            "base_accuracy": sum(base) / len(base), "base": describe("base"),
            "adapters": {name: {**describe(name),
                                "delta": bootstrap_interval([a - b for a, b in zip(row, base, strict=True)]),
                                "changed": changed_share(choices["base"], choices[name]),
                                "auc_delta": auc_delta_interval(margin["base"], margin[name], truth)}
                         for name, row in correct.items() if name != "base"}}


def render_markdown(result: dict[str, Any]) -> str:
    base = result["base"]
    draw = ("topic-balanced: each topic asked as often on yes as on no items" if result.get("balanced_topics")
            else "drawn as in rounds 9 to 12: yes items ask the abstract's own class, no items a random other one")
    lines = [f"{result['checks']} yes/no reading checks over medical abstracts (seed {result['seed']}; the demo's "
             f"use seed 42), half yes, half no, {draw}; base accuracy {100 * result['base_accuracy']:.1f} %, "
             f"base answers \"Yes\" to {100 * base['yes_rate']:.1f} %, base AUC {base['auc']['mean']:.3f} "
             f"[{base['auc']['low']:.3f}, {base['auc']['high']:.3f}] (0.5 = no reading). Paired 95 % bootstrap "
             "intervals.", "",
             "| adapter | accuracy | Δ over the base [95 % CI] | says \"Yes\" | base answers changed | AUC [95 % CI] "
             "| AUC Δ over the base [95 % CI] |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in result["adapters"].items():
        d, a = row["delta"], row["auc"]
        lines.append(f"| `{name}` | {100 * row['accuracy']:.1f} % | {100 * d['mean']:+.1f} pp "
                     f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] | {100 * row['yes_rate']:.1f} % | "
                     f"{100 * row['changed']:.1f} % | {a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | "
                     + (f"{row['auc_delta']['mean']:+.3f} [{row['auc_delta']['low']:+.3f}, "
                        f"{row['auc_delta']['high']:+.3f}] |" if "auc_delta" in row else "not stored |"))
    if "topic_centred_auc" in base:
        lines += ["", "Topic-centred AUC (each margin minus the mean margin of its asked topic: reading within a "
                  "topic, free of a bias toward some topics):", "",
                  "| model | topic-centred AUC [95 % CI] |", "| --- | --- |"]
        for name, row in [("base", base), *result["adapters"].items()]:
            t = row["topic_centred_auc"]
            lines.append(f"| `{name}` | {t['mean']:.3f} [{t['low']:.3f}, {t['high']:.3f}] |")
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], truth: list[int], scores: dict[str, list[list[float]]],
                  out: Path) -> None:
    """``<out>.json`` with the log-likelihoods (so it can be re-scored in turn) and ``<out>.md``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**result, "truth": truth, "loglikelihoods": scores},
                                                   indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render_markdown(result), encoding="utf-8")
    print(render_markdown(result))


def rescore(files: Sequence[Path], csv_path: Path, out: Path) -> None:
    """One summary over earlier runs on the same checks (their base must agree), from stored log-likelihoods."""
    stored = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    first = stored[0]
    balanced = first.get("balanced_topics", False)  # files of rounds 9 to 12 predate the field
    checks = build_reading_checks(csv_path, first["checks"], first["seed"], balanced_topics=balanced)
    truth = [c.answer_index for c in checks]
    scores: dict[str, list[list[float]]] = {}
    for f, run in zip(files, stored, strict=True):
        if (run.get("balanced_topics", False) != balanced or run["truth"] != truth
                or run["loglikelihoods"]["base"] != first["loglikelihoods"]["base"]):
            raise SystemExit(f"{f}: other checks or another base than {files[0]}; rescore runs of one draw only")
        scores.update(run["loglikelihoods"])
    result = {**summarize(scores, truth, first["seed"], topics=[c.condition for c in checks]),
              "balanced_topics": balanced}
    write_results(result, truth, scores, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapters", nargs="*", type=Path)
    parser.add_argument("--rescore", nargs="+", type=Path, default=[],
                        help="earlier result JSON files: summarise their stored log-likelihoods again (same "
                        "checks, no model run), e.g. to add the topic-centred AUC")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--own-or-random", action="store_true",
                        help="draw the checks as rounds 9 to 12 did (own class or a random other one) instead of "
                        "topic-balanced")
    parser.add_argument("--scales", default="1", help="comma-separated factors on each adapter's LoRA scaling "
                        "(1 = the adapter as trained; 0.5 = half its update)")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    cfg = load_config(args.config)
    csv_path = data_path(cfg.evaluation.abstracts_csv, "abstracts")
    if csv_path is None or not csv_path.is_file():
        raise SystemExit("the medical abstracts were not found (evaluation.abstracts_csv)")
    if args.rescore:
        rescore(args.rescore, csv_path, args.out)
        return
    if not args.adapters:
        parser.error("give adapter directories, or --rescore earlier results")
    balanced = not args.own_or_random
    checks = build_reading_checks(csv_path, args.n, args.seed, balanced_topics=balanced)
    loaded = load_from_config(cfg.models.llm)
    prompts = [build_prompt(loaded.tokenizer, loaded.spec, c.question) for c in checks]

    def loglikelihoods(model: Any) -> list[list[float]]:
        return [[s.loglikelihood for s in score_options(model, loaded.tokenizer, loaded.spec, p, OPTIONS)]
                for p in prompts]

    scores = {"base": loglikelihoods(loaded.model)}
    for adapter in args.adapters:
        model = load_lora(loaded.model, adapter)
        model.eval()
        for scale in scales:
            set_lora_scale(model, scale)
            scores[adapter.name if scale == 1 else f"{adapter.name} x{scale:g}"] = loglikelihoods(model)
        model.unload()
    truth = [c.answer_index for c in checks]
    result = {**summarize(scores, truth, args.seed, topics=[c.condition for c in checks]), "balanced_topics": balanced}
    write_results(result, truth, scores, args.out)


if __name__ == "__main__":
    main()
