"""What follows from a model's config: PEFT task type, LoRA target names, prompt style.

Encoder-decoder (T5 family) and decoder-only models are both first-class; everything that differs between
them is decided here, once, so training, evaluation and serving never branch on model names themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import TaskType
from transformers import PretrainedConfig

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


@dataclass(frozen=True)
class ModelSpec:
    """The facts about a base model that the rest of medlora needs."""

    model_type: str
    is_encoder_decoder: bool
    target_modules: tuple[str, ...]

    @property
    def task_type(self) -> TaskType:
        return TaskType.SEQ_2_SEQ_LM if self.is_encoder_decoder else TaskType.CAUSAL_LM


def describe_model(config: PretrainedConfig, target_modules: list[str] | None = None) -> ModelSpec:
    """Derive a :class:`ModelSpec` from a transformers config; ``target_modules`` overrides the defaults."""
    model_type = getattr(config, "model_type", "") or ""
    targets = target_modules or _QUERY_VALUE_TARGETS.get(model_type, _DEFAULT_TARGETS)
    return ModelSpec(
        model_type=model_type,
        is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False)),
        target_modules=tuple(targets),
    )
