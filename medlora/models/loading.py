"""Load a base model and its tokenizer, ready for training, evaluation or serving."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from medlora.config import LLMConfig, QuantizationConfig
from medlora.errors import ModelNotAvailableError
from medlora.models.architecture import ModelSpec, describe_model
from medlora.models.quantization import quantization_kwargs
from medlora.models.resolve import ResolvedModel, hub_unreachable_message, resolve_model

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec
    source: ResolvedModel

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Causal models often ship without a pad token; reusing EOS is the standard, harmless choice because
    # padded positions are masked out of attention and loss.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    name: str,
    *,
    quantization: QuantizationConfig | None = None,
    cache_dir: str | Path | None = None,
    target_modules: list[str] | None = None,
    device: torch.device | None = None,
    accept_terms: bool = False,
) -> LoadedModel:
    """Resolve ``name`` and load model + tokenizer in float32 (or k-bit on CUDA when asked).

    ``accept_terms``: the user accepted the terms of a model that has them (``models.llm.accept_model_terms``).
    """
    source = resolve_model(name, cache_dir, accept_terms=accept_terms)
    try:
        config = AutoConfig.from_pretrained(source.location)
        tokenizer = _prepare_tokenizer(AutoTokenizer.from_pretrained(source.location))
    except OSError as err:
        if source.kind == "hub":
            raise ModelNotAvailableError(hub_unreachable_message(name, err)) from None
        raise ModelNotAvailableError(f"{source.location}: cannot load model files: {err}") from None
    spec = describe_model(config, target_modules)
    model_cls = AutoModelForSeq2SeqLM if spec.is_encoder_decoder else AutoModelForCausalLM
    kwargs: dict[str, Any] = quantization_kwargs(quantization or QuantizationConfig())
    # Never bf16/fp16 on CPU: these CPUs have no native bf16 and it runs hundreds of times slower.
    kwargs.setdefault("dtype", torch.float32)
    # safetensors only: a pickled pytorch_model.bin in a downloaded or copied model directory can run code.
    try:
        model = model_cls.from_pretrained(source.location, use_safetensors=True, **kwargs)
    except OSError as err:
        raise ModelNotAvailableError(
            f"{source.location}: no safetensors weights ({str(err).splitlines()[0][:200]}); medlora does not load "
            "pickled weights (pytorch_model.bin) because they can run code: convert the model once where you "
            "trust it (save_pretrained(DIR, safe_serialization=True))"
        ) from None
    if "device_map" not in kwargs:
        # transformers' decorator on to() hides its signature from type checkers
        model.to(device or best_device())  # type: ignore[arg-type]
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, source=source)


def load_from_config(llm: LLMConfig, device: torch.device | None = None) -> LoadedModel:
    return load_base_model(
        llm.name,
        quantization=llm.quantization,
        cache_dir=llm.cache_dir,
        target_modules=llm.target_modules,
        device=device,
        accept_terms=llm.accept_model_terms,
    )
