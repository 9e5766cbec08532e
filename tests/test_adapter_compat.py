"""Saved adapters against vLLM's LoRA constraints (target modules, modules_to_save, DoRA, bias, rank)."""

from __future__ import annotations

import json

import pytest
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from medlora.adapters.compat import check_vllm, main, vllm_serve_command
from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset
from medlora.training.trainer import train_adapter


@pytest.fixture(scope="module")
def trained(tiny_llama_dir, tmp_path_factory):
    """Adapters saved by ``train_adapter`` itself, one per LoRA target preset."""
    root = tmp_path_factory.mktemp("compat")
    pairs = root / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"input": f"What treats condition {i}?",
                                           "output": f"Condition {i} is treated with therapy number {i} daily."})
                               for i in range(12)) + "\n", encoding="utf-8")
    terms = root / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    base = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "data.specialty": str(terms), "data.sources": [str(pairs)],
        "training.epochs": 1, "training.batch_size": 4, "training.max_length": 48, "training.save_steps": 50,
        "training.threads": 1, "training.precision": "fp32"})
    prepare_dataset(base.data, output_dir=root / "data")
    out = {}
    for preset in ("qv", "attention", "all-linear"):
        out[preset] = root / preset
        train_adapter(base.with_overrides({"training.lora_targets": preset}), root / "data", out[preset])
    return out


@pytest.mark.parametrize("preset", ["qv", "attention", "all-linear"])
def test_every_preset_medlora_saves_loads_in_vllm(trained, preset):
    report = check_vllm(trained[preset])
    assert report.ok, report.problems
    assert report.model_type == "llama" and report.rank == 8 and not report.notes
    if preset == "all-linear":
        assert {"gate_proj", "up_proj", "down_proj"} <= set(report.target_modules)


def _save(tiny_llama_dir, out, **lora):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    config = LoraConfig(task_type="CAUSAL_LM", **{"r": 8, "target_modules": ["q_proj", "v_proj"], **lora})
    get_peft_model(model, config).save_pretrained(out)
    (out / "medlora.json").write_text(json.dumps({"base_model": {"model_type": "llama"}}))
    return out


def test_each_vllm_constraint_is_named(tiny_llama_dir, tmp_path):
    saved = _save(tiny_llama_dir, tmp_path / "head", modules_to_save=["lm_head"])
    assert any("modules_to_save" in p for p in check_vllm(saved).problems)
    saved = _save(tiny_llama_dir, tmp_path / "dora", use_dora=True)
    assert any("DoRA" in p for p in check_vllm(saved).problems)
    saved = _save(tiny_llama_dir, tmp_path / "bias", bias="lora_only")
    assert any("bias" in p for p in check_vllm(saved).problems)
    saved = _save(tiny_llama_dir, tmp_path / "embed", target_modules=["q_proj", "embed_tokens"])
    assert any("['embed_tokens'] not LoRA-capable" in p for p in check_vllm(saved).problems)
    saved = _save(tiny_llama_dir, tmp_path / "r32", r=32)
    report = check_vllm(saved)
    assert report.ok and report.required_max_lora_rank() == 32 and "--max-lora-rank 32" in report.notes[0]
    # vLLM accepts ranks up to 512 only: a bigger one is refused (edit the file: training it is slow).
    config_path = saved / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "r": 1024}))
    assert any("r: 1024" in p for p in check_vllm(saved).problems)
    assert any("no LoRA support" in p for p in check_vllm(_save(tiny_llama_dir, tmp_path / "t", r=8), "t5").problems)


def test_cli_exit_code_and_vllm_command(trained, tiny_llama_dir, tmp_path, capsys):
    assert main([str(trained["qv"]), str(trained["attention"])]) == 0
    bad = _save(tiny_llama_dir, tmp_path / "head", modules_to_save=["lm_head"])
    assert main([str(trained["qv"]), str(bad)]) == 1
    assert "NOT loadable" in capsys.readouterr().out
    argv = vllm_serve_command("HuggingFaceTB/SmolLM2-135M-Instruct",
                              {"derm": trained["qv"], "cardio": trained["attention"]})
    assert argv[:4] == ["vllm", "serve", "HuggingFaceTB/SmolLM2-135M-Instruct", "--enable-lora"]
    assert argv[argv.index("--max-loras") + 1] == "2" and argv[argv.index("--max-lora-rank") + 1] == "16"
    assert argv[-2:] == [f"derm={trained['qv']}", f"cardio={trained['attention']}"]


def test_not_an_adapter_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json: missing"):
        check_vllm(tmp_path)
