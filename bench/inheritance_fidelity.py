#!/usr/bin/env python3
"""Does the model state the inheritance pattern its sources state? Guarded decoding on and off, measured.

Open-book answers to "Is X inherited?" went wrong in two ways: source [1] stated the wrong pattern (retrieval:
``bench/retrieval_quality.py``), or source [1] stated the right one and the model wrote another ("autosomal
dominant" beside a source that says "autosomal recessive"). This bench measures the second, and the decoding
guard against it (:class:`medlora.models.generation.StatedInheritance`), on questions that never touch a test
split:

- the validation splits' inheritance questions, and the train splits' ones that the adapter was not trained on
  (another specialty's, or beyond the adapter's ``max_train_samples``), of every English specialty;
- each is shown the sources the bot would show (``service.min_source_match``, top 3) with every document of its
  own split masked (a train question's also masks the test split's documents, as in ``retrieval_quality.py``).

For the base and the adapter, guard off and on: the share of answers stating the reference's pattern (and no
other), the share contradicting every shown source, and the paired on-minus-off difference with a 95 %
bootstrap interval. Writes ``bench/results/inheritance_fidelity.{json,md}``, and every answer to
``reports/validation/inheritance_fidelity.jsonl`` (git-ignored: it quotes the data).

Usage::

    python bench/inheritance_fidelity.py --adapter data/models/lora-dermatology-demo-adapter
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import bootstrap_interval, ensure_prepared

from medlora.adapters.checks import load_lora
from medlora.config import load_config
from medlora.data.inheritance import inheritance_patterns
from medlora.data.prepare import load_split
from medlora.data.records import QARecord
from medlora.evaluation.metrics.facts import inheritance_correct, is_inheritance_question
from medlora.evaluation.runs import numbered
from medlora.models.generation import banned_qualifiers, generate_answers, shown_text
from medlora.models.loading import load_from_config
from medlora.models.prompts import build_prompt
from medlora.retrieval import Source, SourceIndex, configured_index, held_out_documents
from medlora.specialties import english_builtin_specialties

K = 3
RESULTS = Path(__file__).parent / "results"


def probe_questions(cfg: Any, index: SourceIndex, adapter_meta: dict[str, Any]
                    ) -> list[tuple[str, QARecord, list[Source]]]:
    """``(specialty/split, question, shown sources)`` for every inheritance question the adapter never saw."""
    trained_on = adapter_meta.get("specialty")
    trained_count = adapter_meta.get("max_train_samples")
    out = []
    for specialty in english_builtin_specialties():
        data_dir = ensure_prepared(cfg, specialty)
        splits = {s: load_split(data_dir, s) for s in ("train", "validation", "test")}
        for split, hidden in (("train", splits["train"] + splits["test"]), ("validation", splits["validation"])):
            records = splits[split]
            if split == "train" and specialty == trained_on:
                records = records[trained_count:] if trained_count else []
            mask = index.mask(held_out_documents(hidden))
            for record in records:
                if is_inheritance_question(record) and inheritance_patterns(record.answer):
                    hits = index.search(record.question, K, mask=mask, min_title_match=cfg.service.min_source_match)
                    out.append((f"{specialty}/{split}", record, [h.source for h in hits]))
    return out


def adapter_metadata(adapter_dir: Path) -> dict[str, Any]:
    meta = json.loads((adapter_dir / "medlora.json").read_text(encoding="utf-8"))
    return {"specialty": meta.get("specialty"),
            "max_train_samples": meta.get("hyperparameters", {}).get("max_train_samples")}


def score(questions: list[tuple[str, QARecord, list[Source]]], answers: list[str]) -> dict[str, list[float]]:
    correct, contradicts = [], []
    for (_, record, sources), answer in zip(questions, answers, strict=True):
        correct.append(float(bool(inheritance_correct(record, answer))))
        stated_by_sources = inheritance_patterns(shown_text(sources))
        said = inheritance_patterns(answer)
        contradicts.append(float(bool(stated_by_sources) and bool(said) and not (said & stated_by_sources)))
    return {"correct": correct, "contradicts_sources": contradicts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "inheritance_fidelity")
    parser.add_argument("--answers", type=Path, default=Path("reports/validation/inheritance_fidelity.jsonl"),
                        help="every answer, for audit (git-ignored: it quotes the data)")
    args = parser.parse_args()

    cfg = load_config(args.config)
    index = configured_index(cfg)
    if index is None:
        raise SystemExit("the source index is off (service.retrieval: false): nothing to measure")
    meta = adapter_metadata(args.adapter)
    questions = probe_questions(cfg, index, meta)
    loaded = load_from_config(cfg.models.llm)
    tok, spec = loaded.tokenizer, loaded.spec
    prompts = [build_prompt(tok, spec, r.question, numbered(s)) for _, r, s in questions]
    limits = [len(s) for _, _, s in questions]
    texts = [shown_text(sources) for _, _, sources in questions]
    guarded = sum(bool(banned_qualifiers(t)) for t in texts)

    results: dict[str, Any] = {}
    saved: list[dict[str, Any]] = []
    for variant in ("base", "adapter"):
        model = load_lora(loaded.model, args.adapter) if variant == "adapter" else loaded.model
        model.eval()
        scores = {}
        for guard in ("off", "on"):
            answers = generate_answers(model, tok, spec, prompts, max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, citations=limits,
                                       source_texts=texts if guard == "on" else None)
            scores[guard] = score(questions, [a.text for a in answers])
            saved += [{"variant": variant, "guard": guard, "set": where, "question": r.question,
                       "reference_patterns": sorted(inheritance_patterns(r.answer)),
                       "source_patterns": sorted(inheritance_patterns(t)), "answer": a.text}
                      for (where, r, _), t, a in zip(questions, texts, answers, strict=True)]
        results[variant] = {
            f"{metric} guard {guard}": bootstrap_interval(scores[guard][metric]) for guard in ("off", "on")
            for metric in ("correct", "contradicts_sources")}
        results[variant]["correct on - off"] = bootstrap_interval(
            [b - a for a, b in zip(scores["off"]["correct"], scores["on"]["correct"], strict=True)])
        if variant == "adapter":
            model.unload()

    sets: dict[str, int] = {}
    for where, _, _ in questions:
        sets[where] = sets.get(where, 0) + 1
    result = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "adapter": args.adapter.name,
              "adapter_trained_on": meta, "questions": len(questions), "sets": sets,
              "shown_a_source": sum(bool(s) for _, _, s in questions), "guard_applies": guarded,
              "source_1_states_reference": bootstrap_interval(
                  [float(bool(s) and bool(inheritance_correct(r, s[0].text))) for _, r, s in questions]),
              "variants": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.answers.parent.mkdir(parents=True, exist_ok=True)
    args.answers.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in saved), encoding="utf-8")
    args.out.with_suffix(".md").write_text(render_markdown(result), encoding="utf-8")
    print(render_markdown(result))


def render_markdown(result: dict[str, Any]) -> str:
    def pct(cell: dict[str, float]) -> str:
        return f"{100 * cell['mean']:.0f} % [{100 * cell['low']:.0f}, {100 * cell['high']:.0f}]"

    def pp(cell: dict[str, float]) -> str:
        return f"{100 * cell['mean']:+.1f} pp [{100 * cell['low']:+.1f}, {100 * cell['high']:+.1f}]"

    lines = [f"Adapter `{result['adapter']}`; {result['questions']} inheritance questions it was never trained on "
             f"({', '.join(f'{k} {v}' for k, v in result['sets'].items())}), no test question; "
             f"{result['shown_a_source']} shown a source, the guard applies to {result['guard_applies']}. "
             f"Source [1] states the reference's pattern for {pct(result['source_1_states_reference'])}.", "",
             "| model | pattern correct, guard off | guard on | on − off (paired) | contradicts every source, off "
             "| on |",
             "| --- | --- | --- | --- | --- | --- |"]
    for variant, row in result["variants"].items():
        lines.append(f"| {variant} | {pct(row['correct guard off'])} | {pct(row['correct guard on'])} | "
                     f"{pp(row['correct on - off'])} | {pct(row['contradicts_sources guard off'])} | "
                     f"{pct(row['contradicts_sources guard on'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
