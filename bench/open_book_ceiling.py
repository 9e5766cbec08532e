#!/usr/bin/env python3
"""Can an open-book answer beat the same adapter's closed-book answer on ROUGE-L with these sources?

Open-book evaluation masks every document of the evaluated split, so no source holds the reference answer's own
prose: the shown sources are other documents on the condition (mostly HPO annotations: inheritance, genes,
signs). This bench reads one validation sweep variant's saved answers (``reports/validation/...jsonl``, written
by ``bench/quality_sweep.py``; the test split is never read) and, on the questions that were shown a source,
compares with the adapter's own closed-book answer (paired, 95 % bootstrap interval):

- ``actual`` — the adapter's open-book answer;
- ``fact + closed, same length`` — an answer composed without a model: "According to [1], <first sentence of
  source [1]>" followed by the closed-book answer, cut to the closed-book answer's length in words;
- ``fact + closed, longer`` — the same, not cut.

The composed answers are what "cite a supporting fact, then answer as well as closed-book" would produce at best.
If even they score below the closed-book answer, citing these sources cannot raise ROUGE-L against these
references: the metric rewards the reference's prose, and the masked index does not hold it.

Usage::

    python bench/open_book_ceiling.py reports/validation/quality_sweep_round7/lead-retrieval-order-lr2e-3.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import bootstrap_interval

from medlora.config import load_config
from medlora.data.records import QARecord
from medlora.evaluation.metrics.base import EvalSample
from medlora.evaluation.metrics.text_overlap import RougeL
from medlora.retrieval import Source, configured_index

_SENTENCE_END = re.compile(r"(?<=[a-z0-9)%][.!?])\s+(?=[A-Z])")


def first_sentence(source: Source) -> str:
    """The first sentence of a source's snippet, without the "Title." / "Title:" an HPO passage starts with."""
    text = source.text
    for lead in (f"{source.title}. ", f"{source.title}: "):
        if text.startswith(lead):
            text = text[len(lead):]
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def pairs(predictions: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(open, closed)`` answers of the adapter (any variant but the base), paired by question."""
    by_question: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for line in predictions.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["variant"] != "base" and row["mode"] in ("open", "closed"):
            by_question[(row["question"], row["reference"])][row["mode"]] = row
    return [(d["open"], d["closed"]) for d in by_question.values() if {"open", "closed"} <= d.keys()]


def measure(predictions: Path, sources: dict[str, Source]) -> dict[str, Any]:
    rouge = RougeL()

    def score(row: dict[str, Any], text: str) -> float:
        return rouge.value(EvalSample(QARecord(row["question"], row["reference"], "validation"), text)) or 0.0

    deltas: dict[str, list[float]] = defaultdict(list)
    for open_row, closed_row in pairs(predictions):
        if not open_row["sources"]:
            continue
        closed = score(closed_row, closed_row["prediction"])
        fact = first_sentence(sources[open_row["sources"][0]["source_id"]])
        words = f"According to [1], {fact} {closed_row['prediction']}"
        composed = words.split()
        deltas["actual"].append(score(open_row, open_row["prediction"]) - closed)
        deltas["fact + closed, same length"].append(
            score(closed_row, " ".join(composed[: len(closed_row["prediction"].split())])) - closed)
        deltas["fact + closed, longer"].append(score(closed_row, words) - closed)
    return {name: {**bootstrap_interval(values), "n": len(values)} for name, values in deltas.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--out", default="bench/results/open_book_ceiling")
    args = parser.parse_args()
    index = configured_index(load_config(args.config))
    if index is None:
        raise SystemExit("no source index")
    wanted = {s["source_id"] for open_row, _ in pairs(args.predictions) for s in open_row["sources"][:1]}
    sources = {s.source_id: s for s in index.sources if s.source_id in wanted}
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "predictions": args.predictions.name,
              "open_minus_closed": measure(args.predictions, sources)}
    lines = [f"Adapter open-book minus its own closed-book ROUGE-L on validation questions shown a source "
             f"({args.predictions.name}); paired 95 % bootstrap intervals.", "",
             "| open-book answer | n | Δ ROUGE-L vs closed-book [95 % CI] |", "| --- | ---: | --- |"]
    for name, row in result["open_minus_closed"].items():
        lines.append(f"| {name} | {row['n']} | {row['mean']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}] |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
