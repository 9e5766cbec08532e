"""The LoRA configuration: the original note's recipe, with targets that follow the architecture."""

from __future__ import annotations

from peft import LoraConfig

from medlora.config import TrainingConfig
from medlora.models.architecture import ModelSpec


def build_lora_config(training: TrainingConfig, spec: ModelSpec) -> LoraConfig:
    return LoraConfig(
        task_type=spec.task_type,
        r=training.lora_r,
        lora_alpha=training.lora_alpha,
        lora_dropout=training.lora_dropout,
        target_modules=list(training.target_modules or spec.target_modules),
        bias="none",
    )
