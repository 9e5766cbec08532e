#!/usr/bin/env python3
"""How often the bot's retrieval puts a source *about the question's condition* in front of the model.

For every English specialty's prepared VALIDATION split (the test split is never read here), each question is
searched in the default index with every document of that split masked, exactly as open-book evaluation does,
and a source counts as relevant when :func:`medlora.retrieval.relevance.about_condition` says it is about the
question's condition (the citation metric's rule). Reported per title-match weight
(:data:`medlora.retrieval.index.TITLE_MATCH_WEIGHT`; 0 = plain BM25) and per minimum title match
(config ``service.min_source_match``; 0 = always three sources):

- ``shown`` — the share of questions shown at least one source (the rest are answered without sources);
- ``relevant@1`` — of those, the first source is relevant (what a model that cites ``[1]`` gets right);
- ``hit@3`` — of those, at least one source shown is relevant;
- ``precision@3`` — of those, the share of the shown sources that are relevant;
- ``copy@1`` and ``best copy@3`` — the ROUGE-L (the evaluation's own metric) of source [1]'s text, and of the
  best of the three, against the question's reference answer: what an answer that copied one shown source
  verbatim would score open-book. ``copy@1`` is what a model that recites [1] gets; ``best copy@3`` is a ceiling
  no model reaches without knowing the reference (the best source is often not about the condition at all).

Each figure carries a 95 % bootstrap interval over questions; the settings are chosen on dermatology.

A second table measures the answer-type rerank (:data:`medlora.retrieval.index.ANSWER_TYPE_WEIGHT`) on every
inheritance question whose reference states a pattern, of the TRAIN and VALIDATION splits of all three English
specialties pooled (the validation splits alone hold 10): a train question is searched with the train and test
splits' documents masked, a validation question with its split's. ``states@1`` is the share of those questions whose
source [1] states the reference's pattern and no other (the evaluation's inheritance rule applied to the source);
a question shown no source counts as a miss.

Usage::

    python bench/retrieval_quality.py            # results in bench/results/retrieval_quality.{json,md}
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import bootstrap_interval, ensure_prepared

from medlora.config import load_config
from medlora.data.prepare import load_split
from medlora.specialties import english_builtin_specialties
from medlora.retrieval import SourceIndex, configured_index, held_out_documents
from medlora.evaluation.metrics.text_overlap import RougeL
from medlora.evaluation.metrics.base import EvalSample
from medlora.retrieval.relevance import about_condition
from medlora.evaluation.metrics.facts import inheritance_correct, is_inheritance_question
from medlora.data.inheritance import inheritance_patterns
from medlora.retrieval.index import TITLE_MATCH_WEIGHT

WEIGHTS = (0.0, 0.5, 2.0)
MIN_MATCHES = (0.0, 0.34, 0.5, 0.67)
K = 3
ANSWER_TYPE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


def measure(index: SourceIndex, data_dir: Path, weight: float, min_match: float) -> dict[str, Any]:
    records = [r for r in load_split(data_dir, "validation") if r.focus]
    mask = index.mask(held_out_documents(load_split(data_dir, "validation")))
    rouge = RougeL()
    shown, first, any3, share3, copy1, best3 = [], [], [], [], [], []
    for record in records:
        hits = index.search(record.question, K, mask=mask, title_weight=weight, min_title_match=min_match)
        shown.append(float(bool(hits)))
        if not hits:
            continue
        relevant = [about_condition(h.source, record.focus, record.synonyms, record.cuis) for h in hits]
        first.append(float(relevant[0]))
        any3.append(float(any(relevant)))
        share3.append(sum(relevant) / len(relevant))
        copied = [rouge.value(EvalSample(record, h.source.text)) or 0.0 for h in hits]
        copy1.append(copied[0] if copied else 0.0)
        best3.append(max(copied, default=0.0))
    measured = {"shown": shown, "relevant@1": first, "hit@3": any3, "precision@3": share3, "copy@1": copy1,
                "best copy@3": best3}
    return {"questions": len(records), **{name: bootstrap_interval(values) for name, values in measured.items()}}


def inheritance_sets(index: SourceIndex, data_dirs: list[Path]) -> list[tuple[list[Any], Any]]:
    """(inheritance questions, mask) per train and validation split; the test split only lends its documents to
    the train split's mask, so no train question is answered from a test document."""
    sets = []
    for data_dir in data_dirs:
        splits = {s: load_split(data_dir, s) for s in ("train", "validation", "test")}
        for split, hidden in (("train", splits["train"] + splits["test"]), ("validation", splits["validation"])):
            questions = [r for r in splits[split] if is_inheritance_question(r) and inheritance_patterns(r.answer)]
            sets.append((questions, index.mask(held_out_documents(hidden))))
    return sets


def measure_inheritance(index: SourceIndex, sets: list[tuple[list[Any], Any]], weight: float,
                        min_match: float, subtypes: bool = True) -> dict[str, Any]:
    shown, states, relevant = [], [], []
    for questions, mask in sets:
        for record in questions:
            hits = index.search(record.question, K, mask=mask, min_title_match=min_match,
                                answer_type_weight=weight, subtypes=subtypes)
            shown.append(float(bool(hits)))
            states.append(float(bool(hits) and bool(inheritance_correct(record, hits[0].source.text))))
            relevant.append(float(bool(hits) and about_condition(hits[0].source, record.focus, record.synonyms,
                                                                  record.cuis)))
    return {"questions": len(states), "shown": bootstrap_interval(shown), "states@1": bootstrap_interval(states),
            "relevant@1": bootstrap_interval(relevant)}


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"Validation splits, every document of the split masked (open-book), top {K}; 95 % bootstrap "
             "intervals over questions. Weight 0 = plain BM25.", "",
             "| specialty | questions | title-match weight | min title match | shown | relevant@1 | hit@3 | "
             "precision@3 | copy@1 ROUGE-L | best copy@3 ROUGE-L |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for specialty, rows in result["specialties"].items():
        for setting, row in rows.items():
            weight, min_match = setting.split("/")
            cells = [f"{100 * row[m]['mean']:.0f} % [{100 * row[m]['low']:.0f}, {100 * row[m]['high']:.0f}]"
                     for m in ("shown", "relevant@1", "hit@3", "precision@3")]
            cells += [f"{row[m]['mean']:.3f} [{row[m]['low']:.3f}, {row[m]['high']:.3f}]"
                      for m in ("copy@1", "best copy@3") if m in row]
            lines.append(f"| {specialty} | {row['questions']} | {weight} | {min_match} | " + " | ".join(cells) + " |")
    if "inheritance" in result:
        lines += ["", f"Inheritance questions of the train and validation splits, pooled (title-match weight "
                  f"{TITLE_MATCH_WEIGHT}, min title match {result['inheritance_min_match']}); source [1] of each; "
                  "a question shown no source is a miss.", "",
                  "| answer-type weight | subtype numbers need naming | questions | shown | states@1 | relevant@1 |",
                  "| ---: | --- | ---: | --- | --- | --- |"]
        for setting, row in result["inheritance"].items():
            weight, _, subtypes = setting.partition("/")
            cells = [f"{100 * row[m]['mean']:.0f} % [{100 * row[m]['low']:.0f}, {100 * row[m]['high']:.0f}]"
                     for m in ("shown", "states@1", "relevant@1")]
            named = "no" if subtypes == "subtypes" else "yes (round 8)"
            lines.append(f"| {weight} | {named} | {row['questions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--out", default="bench/results/retrieval_quality")
    args = parser.parse_args()
    cfg = load_config(args.config)
    index = configured_index(cfg)
    if index is None:
        raise SystemExit("no source index: nothing to measure")
    result: dict[str, Any] = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "passages": len(index.sources), "k": K, "specialties": {}}
    data_dirs = []
    for specialty in english_builtin_specialties():
        data_dir = ensure_prepared(cfg, specialty)
        data_dirs.append(data_dir)
        result["specialties"][specialty] = {f"{w}/{m}": measure(index, data_dir, w, m)
                                            for w in WEIGHTS for m in MIN_MATCHES}
        print(specialty, {s: (round(r["shown"]["mean"], 2), round(r["relevant@1"]["mean"], 2))
                          for s, r in result["specialties"][specialty].items()}, flush=True)
    sets = inheritance_sets(index, data_dirs)
    result["inheritance_min_match"] = cfg.service.min_source_match  # the bot's setting
    result["inheritance"] = {
        f"{w}/{'subtypes' if subtypes else 'named'}": measure_inheritance(index, sets, w, cfg.service.min_source_match,
                                                                          subtypes)
        for subtypes in (False, True) for w in ANSWER_TYPE_WEIGHTS}
    print("inheritance", {w: round(r["states@1"]["mean"], 2) for w, r in result["inheritance"].items()}, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    out.with_suffix(".md").write_text(render_markdown(result), encoding="utf-8")
    print(f"results in {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
