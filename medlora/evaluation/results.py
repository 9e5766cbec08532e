"""The result of evaluating one adapter, and what is written from it: ``predictions.jsonl`` and the card's entry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlora.adapters.metadata import read_metadata, record_evaluation
from medlora.adapters.save import rewrite_metadata
from medlora.evaluation.bootstrap import Delta
from medlora.evaluation.context import EvaluationContext
from medlora.evaluation.gate import GateResult
from medlora.evaluation.report import render_markdown
from medlora.evaluation.report_tables import (
    EXPECTED_LABEL,
    NOTE_EXPECTATIONS,
    render_data_markdown,
    render_resources_markdown,
)
from medlora.evaluation.runs import VariantRun


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
    intervals: dict[str, Delta] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    outside: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    evaluation_data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    vignette_examples: list[dict[str, Any]] = field(default_factory=list)
    cited_examples: list[dict[str, Any]] = field(default_factory=list)
    note_cases: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = {
            "variants": self.variants,
            "metric_labels": self.metric_labels,
            "metric_display": self.metric_display,
            "intervals": {k: v.to_json() for k, v in self.intervals.items()},
            "checks": self.checks,
            "outside": self.outside,
            "expected": {m: v for m, v in NOTE_EXPECTATIONS.items()
                         if any(k.partition("@")[0] == m for k in self.metric_labels)},
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
            "note_cases": self.note_cases,
        }
        if self.gate is not None:
            data["gate"] = self.gate.to_json()
        return data


def write_predictions(path: Path, ctx: EvaluationContext, runs: dict[str, VariantRun]) -> None:
    """Every generated answer, one JSON object per line: any number in the report can be audited from it."""
    lines = []
    for name, run in runs.items():
        for mode, generations in run.answers.items():
            for record, sources, gen in zip(ctx.records, ctx.modes[mode], generations, strict=True):
                lines.append({"variant": name, "mode": mode, "doc_id": record.doc_id, "qtype": record.qtype,
                              "question": record.question, "reference": record.answer, "prediction": gen.text,
                              "sources": [{"n": i, "title": s.title, "source_id": s.source_id}
                                          for i, s in enumerate(sources, start=1)],
                              "loop_stopped": gen.loop_stopped, "new_tokens": gen.new_tokens})
        for vignette, gen, choice in zip(ctx.vignettes, run.vignettes, run.choices, strict=True):
            lines.append({"variant": name, "mode": "vignette", "question": vignette.question, "gold": vignette.focus,
                          "options": vignette.options, "choice": choice, "prediction": gen.text})
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def record_in_model_card(adapter_dir: Path, report: EvaluationReport) -> None:
    """Add the metrics table to the adapter's metadata and card, atomically like the adapter itself."""
    data = report.to_json()
    metadata = read_metadata(adapter_dir)
    # One entry per evaluation data set: another data set's result never replaces the own-split verdict.
    record_evaluation(metadata, {
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
    })
    rewrite_metadata(adapter_dir, metadata)
