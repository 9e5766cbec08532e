"""``medlora evaluate``: answer the held-out split with the base and with the adapter, score both, report."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peft import PeftModel
from rich.progress import Progress

from medlora.config import MedloraConfig
from medlora.data.prepare import load_manifest, load_split
from medlora.data.records import QARecord
from medlora.errors import AdapterMismatchError, MedloraError
from medlora.models.generation import Generation, generate_answers
from medlora.evaluation.metrics import EvalSample, get_metric
from medlora.evaluation.report import render_markdown, write_reports
from medlora.fsutil import atomic_directory
from medlora.models.loading import LoadedModel, load_from_config
from medlora.models.prompts import build_prompt
from medlora.training.model_card import read_metadata, write_metadata


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class EvaluationReport:
    variants: dict[str, dict[str, float]]
    metric_labels: dict[str, str]
    samples: int
    meta: dict[str, Any]
    examples: list[dict[str, str]]
    gate: GateResult | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "variants": self.variants,
            "metric_labels": self.metric_labels,
            "samples": self.samples,
            "meta": self.meta,
            "examples": self.examples,
        }
        if self.gate is not None:
            data["gate"] = {"passed": self.gate.passed, "failures": self.gate.failures}
        return data


def latency_summary(generations: Sequence[Generation]) -> dict[str, float]:
    seconds = sorted(g.seconds for g in generations)
    tokens = sum(g.new_tokens for g in generations)
    if not seconds:
        return {}
    p95_index = min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))
    return {
        "latency_mean_s": statistics.fmean(seconds),
        "latency_p50_s": statistics.median(seconds),
        "latency_p95_s": seconds[p95_index],
        "tokens_per_s": tokens / max(sum(seconds), 1e-9),
        "mean_new_tokens": tokens / len(generations),
    }


def score(samples: Sequence[EvalSample], metric_names: Sequence[str]) -> dict[str, float]:
    return {name: get_metric(name).compute(samples) for name in metric_names}


def check_gate(variants: dict[str, dict[str, float]], margins: dict[str, float]) -> GateResult:
    """The adapter must beat the base by at least ``margin`` on every gated metric."""
    failures = []
    base, adapter = variants["base"], variants["adapter"]
    for metric, margin in margins.items():
        if metric not in base or metric not in adapter:
            failures.append(f"{metric}: not measured (add it to evaluation.metrics)")
        elif adapter[metric] - base[metric] < margin:
            failures.append(
                f"{metric}: adapter {adapter[metric]:.4f} vs base {base[metric]:.4f} "
                f"(needs a lift of at least {margin:+.4f})"
            )
    return GateResult(passed=not failures, failures=failures)


def check_adapter_base(adapter_dir: Path, loaded: LoadedModel) -> None:
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise MedloraError(f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json); train one first")
    expected = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if expected and expected not in (loaded.source.base_model_id, loaded.source.name, loaded.source.location):
        raise AdapterMismatchError(
            f"{adapter_dir} was trained on '{expected}' but the loaded base is '{loaded.source.base_model_id}'; "
            "set models.llm.name to the adapter's base model"
        )


def _generate(loaded: LoadedModel, model: Any, records: Sequence[QARecord], cfg: MedloraConfig,
              progress: Progress, label: str) -> list[Generation]:
    prompts = [build_prompt(loaded.tokenizer, loaded.spec, r.question) for r in records]
    task = progress.add_task(f"Generating ({label})", total=len(prompts))
    return generate_answers(
        model, loaded.tokenizer, loaded.spec, prompts,
        max_new_tokens=cfg.evaluation.max_new_tokens, batch_size=cfg.evaluation.batch_size,
        on_batch=lambda n: progress.advance(task, n),
    )


def evaluate_adapter(
    cfg: MedloraConfig,
    data_dir: str | Path,
    adapter_dir: str | Path,
    output_dir: str | Path,
    *,
    loaded: LoadedModel | None = None,
) -> EvaluationReport:
    adapter_dir = Path(adapter_dir)
    loaded = loaded or load_from_config(cfg.models.llm)
    check_adapter_base(adapter_dir, loaded)
    records = load_split(data_dir, "test")[: cfg.evaluation.max_samples]
    if not records:
        raise MedloraError(f"{data_dir}: the test split is empty; prepare with a larger test_fraction")
    metric_names = list(cfg.evaluation.metrics)

    with Progress() as progress:
        base_gens = _generate(loaded, loaded.model, records, cfg, progress, "base")
        peft_model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
        peft_model.eval()
        adapter_gens = _generate(loaded, peft_model, records, cfg, progress, "adapter")
        peft_model.unload()  # give the caller its base model back untouched

    variants = {}
    for name, gens in (("base", base_gens), ("adapter", adapter_gens)):
        samples = [EvalSample(r, g.text) for r, g in zip(records, gens, strict=True)]
        variants[name] = {**score(samples, metric_names), **latency_summary(gens)}

    manifest = load_manifest(data_dir)
    report = EvaluationReport(
        variants=variants,
        metric_labels={name: get_metric(name).label for name in metric_names},
        samples=len(records),
        meta={
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "base_model": loaded.source.base_model_id,
            "adapter": adapter_dir.name,
            "specialty": manifest.get("specialty"),
            "dataset_hash": manifest.get("dataset_hash"),
            "max_new_tokens": cfg.evaluation.max_new_tokens,
            "decoding": "greedy",
        },
        examples=[
            {"question": r.question, "reference": r.answer, "base": b.text, "adapter": a.text}
            for r, b, a in list(zip(records, base_gens, adapter_gens, strict=True))[:5]
        ],
    )
    report.gate = check_gate(variants, cfg.evaluation.gate.margins)
    write_reports(report.to_json(), Path(output_dir))
    _record_in_model_card(adapter_dir, report)
    return report


def _record_in_model_card(adapter_dir: Path, report: EvaluationReport) -> None:
    """Add the metrics table to the adapter's metadata and card, atomically like the adapter itself."""
    metadata = read_metadata(adapter_dir)
    metadata["metrics"] = {
        "variants": report.variants,
        "samples": report.samples,
        "dataset_hash": report.meta.get("dataset_hash"),
        "date": report.meta["date"],
        "table_markdown": render_markdown(report.to_json(), include_examples=False),
        "gate_passed": report.gate.passed if report.gate else None,
    }
    with atomic_directory(adapter_dir) as staging:
        for item in adapter_dir.iterdir():
            if item.is_file():
                (staging / item.name).write_bytes(item.read_bytes())
        write_metadata(staging, metadata)
