"""The LoRA configuration: the original note's recipe, with targets that follow the architecture."""

from __future__ import annotations

from peft import LoraConfig

from medlora.config import TrainingConfig
from medlora.models.architecture import ModelSpec


def top_layers(training: TrainingConfig, num_layers: int | None) -> list[int] | None:
    """The indices of the top ``training.lora_top_layers`` layers (None: every layer gets LoRA).

    Why: backpropagation stops at the lowest layer that has trainable weights, so LoRA on the upper half of a
    model skips half of the backward pass — about a third of a training step on a CPU.
    """
    count = training.lora_top_layers
    if not count or not num_layers or count >= num_layers:
        return None
    return list(range(num_layers - count, num_layers))


def build_lora_config(training: TrainingConfig, spec: ModelSpec, num_layers: int | None = None) -> LoraConfig:
    return LoraConfig(
        layers_to_transform=top_layers(training, num_layers),
        task_type=spec.task_type,
        r=training.lora_r,
        lora_alpha=training.lora_alpha,
        lora_dropout=training.lora_dropout,
        target_modules=list(training.target_modules or spec.target_modules),
        bias="none",
    )
