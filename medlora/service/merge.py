"""``medlora merge``: base + one adapter written as plain transformers weights (no PEFT needed to load)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medlora import MEDICAL_DISCLAIMER
from medlora.adapters.checks import load_lora
from medlora.config import LLMConfig
from medlora.fsutil import atomic_directory, check_replaceable
from medlora.models.embedded import terms_notice
from medlora.models.loading import load_base_model
from medlora.service.registry import AdapterInfo

log = logging.getLogger(__name__)

MERGED_MARKER = "MERGED.md"  # written into every merged model: marks the directory as medlora's to replace


def merge_adapter(llm: LLMConfig, info: AdapterInfo, base_model_id: str, out_dir: str | Path) -> Path:
    """Merge adapter ``info`` into a fresh float32 copy of the base ``llm`` names and save it in ``out_dir``.

    Works on a fresh copy, never on the serving model (which carries every adapter and may be quantized), and
    writes atomically so an interrupted merge leaves nothing half-written. An existing ``out_dir`` is replaced
    only when it is empty or an earlier merge (it holds ``MERGED.md``): ``merge NAME data/models`` must never
    delete the adapters there.
    """
    out = Path(out_dir)
    check_replaceable(out, markers=(MERGED_MARKER,), what="a merged model")
    fresh = load_base_model(llm.name, cache_dir=llm.cache_dir, target_modules=llm.target_modules,
                            device=torch.device("cpu"), accept_terms=llm.accept_model_terms)
    merged = load_lora(fresh.model, info.path).merge_and_unload()
    merged.eval()
    with atomic_directory(out) as staging:
        merged.save_pretrained(staging, safe_serialization=True)
        fresh.tokenizer.save_pretrained(staging)
        (staging / MERGED_MARKER).write_text(
            f"# {info.name} merged into {base_model_id}\n\n"
            f"LoRA adapter `{info.path.name}` merged into base `{base_model_id}` with PEFT "
            "`merge_and_unload()`. Load it with plain transformers (`AutoModelFor...from_pretrained`).\n\n"
            f"{MEDICAL_DISCLAIMER}\n",
            encoding="utf-8",
        )
        if notice := terms_notice(llm.name):  # e.g. Gemma: every distribution carries a NOTICE file
            (staging / "NOTICE").write_text(notice + "\n", encoding="utf-8")
    log.info("merged %s into %s", info.name, out)
    return out
