"""k-bit loading through bitsandbytes, only where CUDA exists.

On a CPU-only machine a request for 8-bit or 4-bit loading is downgraded to full precision with one clear
warning: the config written for a GPU clinic server must still run on a laptop.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from medlora.config import QuantizationConfig

log = logging.getLogger(__name__)


def quantization_kwargs(quantization: QuantizationConfig) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for the requested quantization (empty for full precision)."""
    if not (quantization.load_in_8bit or quantization.load_in_4bit):
        return {}
    mode = "8-bit" if quantization.load_in_8bit else "4-bit"
    if not torch.cuda.is_available():
        log.warning("%s loading needs CUDA and bitsandbytes; no GPU here, loading in full precision", mode)
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        log.warning("%s loading needs bitsandbytes (pip install 'medlora[gpu]'); loading in full precision", mode)
        return {}
    from transformers import BitsAndBytesConfig

    if quantization.load_in_8bit:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    return {"quantization_config": config, "device_map": "auto"}


def is_quantized(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False))
