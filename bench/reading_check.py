#!/usr/bin/env python3
"""Forgetting, measured with power: the yes/no reading check over medical abstracts, on many items.

The evaluation's reading check (``medlora/evaluation/forgetting.py``) asks "Is this abstract about <class>?" and
scores "Yes" vs "No" by log-likelihood. The demo ran 30 of them, and the base model reads them at chance, so a
paired interval on 30 items spans about +-20 pp: the same recipe landed 8 pp apart in two runs, and round 9's demo
adapter failed its gate at -13.3 pp [-26.7, -3.3]. This bench answers the same kind of check on ``--n`` items
drawn with another seed (not the demo's items), for the base and each adapter given, with paired 95 % bootstrap
intervals, so adapters can be compared on the same items. Writes ``bench/results/reading_check.{json,md}``.

Usage::

    python bench/reading_check.py --n 300 --seed 1 data/models/lora-dermatology-demo-adapter ...
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import bootstrap_interval

from medlora.adapters.checks import load_lora
from medlora.config import load_config
from medlora.evaluation.context import data_path
from medlora.evaluation.forgetting import OPTIONS, build_reading_checks
from medlora.evaluation.likelihood import choose, score_options
from medlora.models.loading import load_from_config
from medlora.models.prompts import build_prompt

RESULTS = Path(__file__).parent / "results" / "reading_check"


def summarize(per_item: dict[str, list[float]], n: int, seed: int) -> dict[str, Any]:
    base = per_item["base"]
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "checks": n, "seed": seed,
            "base_accuracy": sum(base) / len(base),
            "adapters": {name: {"accuracy": sum(r) / len(r),
                                "delta": bootstrap_interval([b - a for a, b in zip(base, r, strict=True)])}
                         for name, r in per_item.items() if name != "base"}}


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"{result['checks']} yes/no reading checks over medical abstracts (seed {result['seed']}; the demo's "
             f"use seed 42), half yes, half no; base accuracy {100 * result['base_accuracy']:.1f} %. Paired 95 % "
             "bootstrap intervals.", "",
             "| adapter | accuracy | Δ over the base [95 % CI] |", "| --- | --- | --- |"]
    for name, row in result["adapters"].items():
        d = row["delta"]
        lines.append(f"| `{name}` | {100 * row['accuracy']:.1f} % | {100 * d['mean']:+.1f} pp "
                     f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapters", nargs="+", type=Path)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = load_config(args.config)
    csv_path = data_path(cfg.evaluation.abstracts_csv, "abstracts")
    if csv_path is None or not csv_path.is_file():
        raise SystemExit("the medical abstracts were not found (evaluation.abstracts_csv)")
    checks = build_reading_checks(csv_path, args.n, args.seed)
    loaded = load_from_config(cfg.models.llm)
    prompts = [build_prompt(loaded.tokenizer, loaded.spec, c.question) for c in checks]

    def correct(model: Any) -> list[float]:
        return [float(choose(score_options(model, loaded.tokenizer, loaded.spec, p, OPTIONS)) == c.answer_index)
                for p, c in zip(prompts, checks, strict=True)]

    per_item = {"base": correct(loaded.model)}
    for adapter in args.adapters:
        model = load_lora(loaded.model, adapter)
        model.eval()
        per_item[adapter.name] = correct(model)
        model.unload()
    result = summarize(per_item, len(checks), args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({**result, "per_item": per_item}, indent=1) + "\n",
                                             encoding="utf-8")
    args.out.with_suffix(".md").write_text(render_markdown(result), encoding="utf-8")
    print(render_markdown(result))


if __name__ == "__main__":
    main()
