"""What follows from a model's config: PEFT task type, LoRA target names, prompt style.

Encoder-decoder (T5 family) and decoder-only models are both first-class; everything that differs between
them is decided here, once, so training, evaluation and serving never branch on model names themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PretrainedConfig

if TYPE_CHECKING:
    from peft import TaskType

# LoRA on the attention query/value projections, as the original note does, named per architecture family.
_QUERY_VALUE_TARGETS: dict[str, list[str]] = {
    "t5": ["q", "v"],
    "mt5": ["q", "v"],
    "umt5": ["q", "v"],
    "longt5": ["q", "v"],
    "switch_transformers": ["q", "v"],
    "bart": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
    "phi3": ["qkv_proj"],
}
_DEFAULT_TARGETS = ["q_proj", "v_proj"]  # Llama, Mistral, Qwen, Gemma, SmolLM, Phi, ...

# The rest of the attention block (key and output projections) and the MLP, for the wider presets.
_ATTENTION_EXTRA: dict[str, list[str]] = {
    "t5": ["k", "o"], "mt5": ["k", "o"], "umt5": ["k", "o"], "longt5": ["k", "o"], "switch_transformers": ["k", "o"],
    "bart": ["k_proj", "out_proj"],
    "gpt2": ["c_proj"],  # GPT-2 reuses c_proj for the MLP output too: PEFT matches both
    "gpt_neox": ["dense"], "bloom": ["dense"], "falcon": ["dense"],
    "phi3": ["o_proj"],
}
_DEFAULT_ATTENTION_EXTRA = ["k_proj", "o_proj"]
_MLP: dict[str, list[str]] = {
    "t5": ["wi", "wi_0", "wi_1", "wo"], "mt5": ["wi_0", "wi_1", "wo"], "umt5": ["wi_0", "wi_1", "wo"],
    "longt5": ["wi", "wi_0", "wi_1", "wo"], "switch_transformers": ["wi", "wo"],
    "bart": ["fc1", "fc2"],
    "gpt2": ["c_fc"],
    "gpt_neox": ["dense_h_to_4h", "dense_4h_to_h"], "bloom": ["dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["dense_h_to_4h", "dense_4h_to_h"],
    "phi3": ["gate_up_proj", "down_proj"],
    "llama": ["gate_proj", "up_proj", "down_proj"], "mistral": ["gate_proj", "up_proj", "down_proj"],
    "qwen2": ["gate_proj", "up_proj", "down_proj"], "qwen3": ["gate_proj", "up_proj", "down_proj"],
    "gemma": ["gate_proj", "up_proj", "down_proj"], "gemma2": ["gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["gate_proj", "up_proj", "down_proj"],  # embedded:gemma3-270m
    "phi": ["fc1", "fc2"],
}
# ``training.lora_targets``: how much of each block gets a LoRA pair. qv is the original note's choice.
LORA_TARGET_PRESETS: tuple[str, ...] = ("qv", "attention", "all-linear")


@dataclass(frozen=True)
class ModelSpec:
    """The facts about a base model that the rest of medlora needs."""

    model_type: str
    is_encoder_decoder: bool
    target_modules: tuple[str, ...]
    # True when ``models.llm.target_modules`` named the modules: an explicit list beats any preset.
    targets_explicit: bool = False

    @property
    def task_type(self) -> TaskType:
        from peft import TaskType  # PEFT is imported where adapters are made or loaded, not to serve a bare base

        return TaskType.SEQ_2_SEQ_LM if self.is_encoder_decoder else TaskType.CAUSAL_LM


def describe_model(config: PretrainedConfig, target_modules: list[str] | None = None) -> ModelSpec:
    """Derive a :class:`ModelSpec` from a transformers config; ``target_modules`` overrides the defaults."""
    model_type = getattr(config, "model_type", "") or ""
    targets = target_modules or _QUERY_VALUE_TARGETS.get(model_type, _DEFAULT_TARGETS)
    return ModelSpec(
        model_type=model_type,
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        target_modules=tuple(targets),
        targets_explicit=bool(target_modules),
    )


def preset_targets(model_type: str, preset: str) -> list[str] | str:
    """The LoRA target names of ``preset`` for this architecture family.

    An unknown family gets PEFT's own ``"all-linear"`` for that preset (every linear layer but the output
    head), because guessing its MLP names could silently adapt nothing.
    """
    if preset not in LORA_TARGET_PRESETS:
        raise ValueError(f"training.lora_targets: unknown preset {preset!r}; choose one of "
                         f"{', '.join(LORA_TARGET_PRESETS)} (or list training.target_modules explicitly)")
    query_value = _QUERY_VALUE_TARGETS.get(model_type, _DEFAULT_TARGETS)
    if preset == "qv":
        return list(query_value)
    attention = list(query_value) + _ATTENTION_EXTRA.get(model_type, _DEFAULT_ATTENTION_EXTRA)
    if preset == "attention":
        return attention
    if model_type not in _MLP:
        return "all-linear"
    return attention + _MLP[model_type]
