"""prepare → train → save → reload → evaluate on tiny random T5 and Llama models."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import pipeline_config
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from medlora.data.prepare import prepare_dataset
from medlora.evaluation.evaluate import evaluate_adapter
from medlora.training.trainer import train_adapter





@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_prepare_train_reload_evaluate(arch, tiny_llama_dir, tiny_t5_dir, qa_jsonl, tmp_path):
    model_dir = tiny_llama_dir if arch == "llama" else tiny_t5_dir
    cfg = pipeline_config(model_dir, qa_jsonl, tmp_path)
    data_dir, adapter_dir, report_dir = tmp_path / "data", tmp_path / "adapter", tmp_path / "reports"

    report = prepare_dataset(cfg.data, output_dir=data_dir)
    assert sum(report.split_counts.values()) == 40
    result = train_adapter(cfg, data_dir, adapter_dir)

    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "training_log.json",
                 "loss_curve.png", "medlora.json"):
        assert (adapter_dir / name).is_file(), name
    assert not list(tmp_path.glob(".adapter.staging-*")), "staging directory left behind"
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    expected_targets = {"q", "v"} if arch == "t5" else {"q_proj", "v_proj"}
    assert set(adapter_config["target_modules"]) == expected_targets
    assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 32
    assert 0 < result.trainable_params < result.total_params
    log = json.loads((adapter_dir / "training_log.json").read_text())
    assert any("eval_loss" in entry for entry in log["log_history"]), "no validation loss was logged"

    # Plain PEFT loads it, and the LoRA weights are not a no-op (B matrices moved away from zero).
    cls = AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM
    reloaded = PeftModel.from_pretrained(cls.from_pretrained(model_dir), str(adapter_dir))
    lora_b = [p for n, p in reloaded.named_parameters() if "lora_B" in n]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b)

    evaluation = evaluate_adapter(cfg, data_dir, adapter_dir, report_dir)
    assert set(evaluation.variants) == {"base", "adapter"}
    for variant in evaluation.variants.values():
        assert 0.0 <= variant["bleu@closed"] <= 1.0 and 0.0 <= variant["rouge_l@open"] <= 1.0
        assert variant["latency_mean_s"] > 0
    assert {"bleu@closed", "rouge_l@open"} <= set(evaluation.intervals)
    assert len(evaluation.note_cases) == 6  # the note's questions, French and English, both variants
    assert (report_dir / "report.json").is_file() and (report_dir / "report.md").is_file()
    card = (adapter_dir / "README.md").read_text()
    assert "ROUGE-L" in card and "Medical disclaimer" in card


def test_resume_after_a_finished_run_starts_fresh(tiny_llama_dir, qa_jsonl, tmp_path):
    # A successful save removes the run's checkpoints (they must not seed a later run); the interrupted-run
    # cases are in test_resume.py.
    cfg = pipeline_config(tiny_llama_dir, qa_jsonl, tmp_path).with_overrides({"training.save_steps": 2})
    data_dir, adapter_dir = tmp_path / "data", tmp_path / "adapter"
    prepare_dataset(cfg.data, output_dir=data_dir)
    first = train_adapter(cfg, data_dir, adapter_dir)
    assert first.resumed_from is None and first.steps_run > 0
    assert not adapter_dir.with_name("adapter.checkpoints").exists()

    second = train_adapter(cfg, data_dir, adapter_dir, resume=True)
    assert second.resumed_from is None and second.steps_run == first.steps_run
    summary = json.loads((adapter_dir / "training_log.json").read_text())["result"]
    assert summary["resumed_from"] is None


def test_same_seed_trains_the_same_adapter(tiny_llama_dir, qa_jsonl, tmp_path):
    """Two runs with one seed give bit-identical LoRA weights (LoRA init, data order and grounding are seeded)."""
    from safetensors.torch import load_file

    cfg = pipeline_config(tiny_llama_dir, qa_jsonl, tmp_path).with_overrides({"training.grounded_fraction": 0.5})
    data_dir = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data_dir)
    weights = []
    for run in ("a", "b"):
        train_adapter(cfg, data_dir, tmp_path / run)
        weights.append(load_file(str(tmp_path / run / "adapter_model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = cfg.with_overrides({"training.seed": 7})
    train_adapter(other, data_dir, tmp_path / "c")
    different = load_file(str(tmp_path / "c" / "adapter_model.safetensors"))
    assert any(not torch.equal(weights[0][k], different[k]) for k in different)
