"""The adapter's ``README.md`` model card, rendered from its ``medlora.json`` metadata (never hand-edited)."""

from __future__ import annotations

from typing import Any

import yaml

from medlora import MEDICAL_DISCLAIMER


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def render_model_card(meta: dict[str, Any]) -> str:
    base = meta.get("base_model", {})
    data = meta.get("data", {})
    hp = meta.get("hyperparameters", {})
    specialty = meta.get("specialty", "medical")
    front = {
        "library_name": "peft",
        "base_model": base.get("id"),
        "license": base.get("license", "apache-2.0"),
        "tags": ["lora", "peft", "medical", specialty, "medlora"],
        "pipeline_tag": "text2text-generation" if base.get("is_encoder_decoder") else "text-generation",
    }
    parts = [
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---",
        f"# LoRA adapter: {specialty}",
        f"A LoRA adapter trained with medlora that specialises `{base.get('id')}` on {specialty} question "
        "answering. Load it with plain PEFT:",
        "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM  # or "
        "AutoModelForSeq2SeqLM for T5\n"
        f"base = AutoModelForCausalLM.from_pretrained(\"{base.get('id')}\")\n"
        "model = PeftModel.from_pretrained(base, \"path/to/this/adapter\")\n```",
        "## Base model",
        _table([("id", base.get("id")), ("loaded from", base.get("name")), ("architecture", base.get("model_type")),
                ("parameters", f"{meta.get('parameters', {}).get('total', '?'):,}" if meta.get("parameters") else "?"),
                ("trainable (LoRA)", f"{meta.get('parameters', {}).get('trainable', 0):,} "
                 f"({meta.get('parameters', {}).get('trainable_percent', 0):.3f} %)")]),
        "## Training data",
        _table([("dataset hash", data.get("dataset_hash")), ("counts", data.get("counts")),
                ("split", "by disease focus / source document (no disease on both sides)")]),
    ]
    sources = data.get("sources", [])
    if sources:
        parts.append("Sources and licenses:\n\n" + "\n".join(
            f"- `{s.get('spec')}` — {s.get('records', 0)} records, license {s.get('license')}"
            + (f". {s['attribution']}" if s.get("attribution") else "") for s in sources))
    parts += ["## Hyper-parameters", _table(sorted(hp.items()))]
    training = meta.get("training", {})
    if training:
        parts += ["## Training run", _table(sorted(training.items()))]
    metrics = meta.get("metrics")
    if metrics:
        parts += ["## Evaluation", metrics.get("table_markdown", ""),
                  f"Evaluated on {metrics.get('samples')} held-out questions "
                  f"(data hash {metrics.get('dataset_hash')}).", metrics.get("details_markdown", "")]
    others = {k: v for k, v in (meta.get("evaluations") or {}).items()
              if isinstance(v, dict) and k != str((metrics or {}).get("dataset_hash"))}
    if others:
        parts += ["Also evaluated on other data (not this adapter's own test split; the verdict above does "
                  "not change):\n\n" + "\n".join(
                      f"- data hash {k}: {v.get('samples')} questions, gate "
                      f"{'passed' if v.get('gate_passed') else 'failed' if v.get('gate_passed') is False else 'n/a'}"
                      f" ({v.get('date', '?')})" for k, v in sorted(others.items()))]
    parts += [
        "## Intended use",
        "Research and prototyping of specialty medical question answering, inside a system that shows sources "
        "and keeps a clinician in the loop. Not for diagnosis or treatment decisions. Small base models "
        "produce fluent but sometimes wrong statements.",
        "## Medical disclaimer",
        MEDICAL_DISCLAIMER,
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
