"""Latency and memory: base vs adapter (unmerged LoRA) vs merged adapter.

Latency is timed on the same prompts for every variant, one prompt at a time (what one user waits for), after
one warm-up call, and with a fixed answer length (``min_new_tokens = max_new_tokens``) so that a variant that
happens to stop early does not look faster. Memory: the bytes of the LoRA parameters the adapter adds, the
process RSS before and after attaching the adapter, the process's peak RSS, and on CUDA the peak GPU memory
allocated while each variant generates.
"""

from __future__ import annotations

import copy
import gc
import resource
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec
from medlora.training.encoding import prompt_uses_special_tokens


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def lora_parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of the LoRA weights (``lora_A``/``lora_B``/... parameters) attached to ``model``."""
    return sum(p.numel() * p.element_size() for name, p in model.named_parameters() if "lora_" in name)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in [0, 1])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.inference_mode()
def time_generation(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    max_new_tokens: int,
) -> dict[str, float]:
    """Per-answer latency (s) mean/p50/p95 and tokens/s, batch size 1, fixed answer length."""
    if not prompts:
        return {}
    device = next(model.parameters()).device
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    tokenizer.padding_side = "right" if spec.is_encoder_decoder else "left"

    def run(prompt: str, tokens: int) -> int:
        inputs = tokenizer([prompt], return_tensors="pt", add_special_tokens=add_special).to(device)
        output = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                num_beams=1, pad_token_id=tokenizer.pad_token_id)
        new = output.shape[1] if spec.is_encoder_decoder else output.shape[1] - inputs["input_ids"].shape[1]
        return int(new)

    run(prompts[0], 2)  # warm-up: first-call allocations and kernel selection are not latency
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds, tokens = [], 0
    for prompt in prompts:
        _sync()
        started = time.perf_counter()
        tokens += run(prompt, max_new_tokens)
        _sync()
        seconds.append(time.perf_counter() - started)
    stats = {
        "latency_mean_s": statistics.fmean(seconds),
        "latency_p50_s": statistics.median(seconds),
        "latency_p95_s": percentile(seconds, 0.95),
        "tokens_per_s": tokens / max(sum(seconds), 1e-9),
        "answers": float(len(prompts)),
        "new_tokens_per_answer": tokens / len(prompts),
    }
    if torch.cuda.is_available():
        stats["gpu_peak_bytes"] = float(torch.cuda.max_memory_allocated())
    return stats


@contextmanager
def merged_copy(base_model: torch.nn.Module, adapter_dir: str | Path) -> Iterator[torch.nn.Module]:
    """A deep copy of the base with the adapter merged into its weights; the caller's base stays untouched."""
    from peft import PeftModel

    clone = copy.deepcopy(base_model)
    merged = PeftModel.from_pretrained(clone, str(adapter_dir)).merge_and_unload()
    merged.eval()
    try:
        yield merged
    finally:
        del merged, clone
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def overhead_percent(variant: dict[str, float], base: dict[str, float], key: str = "latency_mean_s") -> float | None:
    if key not in variant or not base.get(key):
        return None
    return 100.0 * (variant[key] / base[key] - 1.0)


def summarise(resources: dict[str, Any]) -> dict[str, Any]:
    """Add the overheads (% latency vs base, MB the adapter adds) that the note's expectations talk about."""
    base = resources.get("base", {})
    summary: dict[str, Any] = {}
    for name in ("adapter", "merged"):
        pct = overhead_percent(resources.get(name, {}), base)
        if pct is not None:
            summary[f"{name}_latency_overhead_pct"] = pct
    memory = resources.get("memory", {})
    if "adapter_parameter_bytes" in memory:
        summary["adapter_parameter_mb"] = memory["adapter_parameter_bytes"] / 2**20
    if "rss_added_by_adapter_bytes" in memory:
        summary["rss_added_by_adapter_mb"] = memory["rss_added_by_adapter_bytes"] / 2**20
    gpu_base, gpu_adapter = base.get("gpu_peak_bytes"), resources.get("adapter", {}).get("gpu_peak_bytes")
    if gpu_base is not None and gpu_adapter is not None:
        summary["gpu_added_by_adapter_mb"] = (gpu_adapter - gpu_base) / 2**20
    resources["summary"] = summary
    return resources
