"""The LoRA configuration: the original note's recipe, with targets that follow the architecture."""

from __future__ import annotations

from peft import LoraConfig

from medlora.config import TrainingConfig
from medlora.models.architecture import ModelSpec, preset_targets


def lora_target_modules(training: TrainingConfig, spec: ModelSpec) -> list[str] | str:
    """Which modules get LoRA pairs: an explicit list wins (training's, then the model's), else the preset.

    ``qv`` without any explicit list keeps ``spec.target_modules`` (the note's query/value choice).
    """
    if training.target_modules:
        return list(training.target_modules)
    if spec.targets_explicit or training.lora_targets == "qv":
        return list(spec.target_modules)
    return preset_targets(spec.model_type, training.lora_targets)


def build_lora_config(training: TrainingConfig, spec: ModelSpec) -> LoraConfig:
    return LoraConfig(
        task_type=spec.task_type,
        r=training.lora_r,
        lora_alpha=training.lora_alpha,
        lora_dropout=training.lora_dropout,
        target_modules=lora_target_modules(training, spec),
        bias="none",
    )
