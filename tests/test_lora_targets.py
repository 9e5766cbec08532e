"""LoRA target presets (qv | attention | all-linear) per architecture; explicit lists still win."""

from __future__ import annotations

import pytest
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from medlora.config import MedloraConfig, TrainingConfig
from medlora.errors import ConfigError
from medlora.models.architecture import describe_model, preset_targets
from medlora.training.lora import build_lora_config, lora_target_modules


def _adapted(model, training: TrainingConfig, spec) -> set[str]:
    """The leaf names of the modules PEFT actually wrapped with a LoRA pair."""
    peft_model = get_peft_model(model, build_lora_config(training, spec))
    return {name.split(".")[-4] for name, _ in peft_model.named_parameters() if name.endswith("lora_A.default.weight")}


@pytest.mark.parametrize(("preset", "expected"), [
    ("qv", {"q_proj", "v_proj"}),
    ("attention", {"q_proj", "k_proj", "v_proj", "o_proj"}),
    ("all-linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
])
def test_llama_presets_adapt_the_named_modules(preset, expected, tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    spec = describe_model(model.config)
    assert _adapted(model, TrainingConfig(lora_targets=preset), spec) == expected


def test_all_linear_never_adapts_the_output_head(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(model, build_lora_config(TrainingConfig(lora_targets="all-linear"),
                                                         describe_model(model.config)))
    assert not any("lm_head" in name and "lora_" in name for name, _ in peft_model.named_parameters())


def test_t5_presets(tiny_t5_dir):
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5_dir)
    spec = describe_model(model.config)
    adapted = _adapted(model, TrainingConfig(lora_targets="all-linear"), spec)
    assert {"q", "k", "v", "o", "wo"} <= adapted and ({"wi"} <= adapted or {"wi_0", "wi_1"} <= adapted)
    assert preset_targets("t5", "attention") == ["q", "v", "k", "o"]


def test_explicit_lists_beat_the_preset(tiny_llama_dir):
    config = AutoConfig.from_pretrained(tiny_llama_dir)
    spec = describe_model(config)
    assert lora_target_modules(TrainingConfig(lora_targets="all-linear", target_modules=["k_proj"]), spec) == ["k_proj"]
    model_level = describe_model(config, ["o_proj"])  # models.llm.target_modules
    assert lora_target_modules(TrainingConfig(lora_targets="attention"), model_level) == ["o_proj"]
    assert lora_target_modules(TrainingConfig(), spec) == ["q_proj", "v_proj"]


def test_unknown_family_falls_back_to_peft_all_linear_and_bad_preset_is_named():
    assert preset_targets("some_new_arch", "all-linear") == "all-linear"
    assert preset_targets("some_new_arch", "attention") == ["q_proj", "v_proj", "k_proj", "o_proj"]
    with pytest.raises(ValueError, match="training.lora_targets"):
        preset_targets("llama", "everything")
    with pytest.raises(ConfigError, match="training.lora_targets"):
        MedloraConfig().with_overrides({"training.lora_targets": "everything"})
