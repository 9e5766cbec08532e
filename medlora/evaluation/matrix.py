"""Several adapters x several specialties: base and every adapter on every specialty's held-out split.

Rows are the base and each adapter, columns the specialties, so specialisation shows as a diagonal. No
latency and no intervals here; the gate checks each adapter against the base on its own specialty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

from medlora.adapters.checks import check_adapter_base, load_lora
from medlora.adapters.metadata import read_metadata
from medlora.config import MedloraConfig
from medlora.evaluation.context import build_context
from medlora.evaluation.gate import GateResult, check_gate
from medlora.evaluation.metrics import get_metric
from medlora.evaluation.report import write_matrix_reports
from medlora.evaluation.runs import metric_info, metric_keys, run_variant, score_run
from medlora.retrieval import configured_index
from medlora.evaluation.vocabulary import Vocabulary
from medlora.models.loading import LoadedModel, load_from_config


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
            "lower_is_better": [m for m in self.metric_labels
                                if not get_metric(m.partition("@")[0]).higher_is_better],
            "counts": self.counts,
            "meta": self.meta,
            "notes": self.notes,
        }
        if self.gate is not None:
            data["gate"] = self.gate.to_json()
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
    if any(m != "closed" for m in cfg.evaluation.modes) and index is None:
        index = configured_index(cfg)  # built (or loaded) once for all columns
    contexts = {s: build_context(cfg, d, metric_names, specialty=s, vocabulary=vocabulary, index=index)
                for s, d in data_dirs.items()}
    cells: dict[str, dict[str, dict[str, float | None]]] = {"base": {}}
    with Progress() as progress:
        for s, ctx in contexts.items():
            run = run_variant(loaded.model, loaded, ctx, progress=progress, label=f"base on {s}", **_budget(cfg))
            cells["base"][s] = score_run(ctx, run, metric_names)
        for name, path in adapter_dirs.items():
            peft_model = load_lora(loaded.model, path)  # LoRA-only safetensors, as the bot checks
            peft_model.eval()
            cells[name] = {}
            for s, ctx in contexts.items():
                run = run_variant(peft_model, loaded, ctx, progress=progress, label=f"{name} on {s}", **_budget(cfg))
                cells[name][s] = score_run(ctx, run, metric_names)
            peft_model.unload()

    failures = []
    for name, path in adapter_dirs.items():
        own = adapter_specialty(name, path)
        if own not in contexts:
            continue
        result = check_gate({"base": cells["base"][own], "adapter": cells[name][own]}, cfg.evaluation.gate.margins,
                            modes=list(contexts[own].modes))
        failures += [f"{name} on {own}: {f}" for f in result.failures]
    keys = list(dict.fromkeys(k for ctx in contexts.values() for k in metric_keys(ctx, metric_names)))
    labels, displays = metric_info(keys)
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


def _budget(cfg: MedloraConfig) -> dict[str, int]:
    ecfg = cfg.evaluation
    return {"max_new_tokens": ecfg.max_new_tokens, "vignette_max_new_tokens": ecfg.vignette_max_new_tokens,
            "batch_size": ecfg.batch_size}
