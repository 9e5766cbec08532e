"""Latency and memory: base vs adapter (unmerged LoRA) vs merged adapter.

Latency is timed on the same prompts for every variant, one prompt at a time (what one user waits for), after
one warm-up call per variant, interleaved prompt by prompt (so changing machine load hits every variant alike),
and with a fixed answer length (``min_new_tokens = max_new_tokens``) so that a variant that happens to stop
early does not look faster. The base is timed as the PEFT model with its adapter disabled, the merged adapter
on a merged deep copy. Memory: the bytes of the LoRA parameters the adapter adds, the
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psutil
import torch
from transformers import PreTrainedTokenizerBase

from medlora.models.generation import decoding_kwargs
from medlora.models.architecture import ModelSpec
from medlora.models.prompts import prompt_uses_special_tokens


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


Variant = tuple[Any, Callable[[], AbstractContextManager[Any]] | None]  # (model, context to enter around calls)


@torch.inference_mode()
def time_variants(
    variants: Mapping[str, Variant],
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    max_new_tokens: int,
) -> dict[str, dict[str, float]]:
    """Per-answer latency (s) mean/p50/p95 and tokens/s of each variant, batch size 1, fixed answer length.

    The variants are timed interleaved, prompt by prompt (in a rotating order), so a change in machine load
    during the benchmark affects all of them alike instead of whichever variant happened to run then.
    """
    if not prompts or not variants:
        return {}
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    tokenizer.padding_side = "right" if spec.is_encoder_decoder else "left"

    def run(variant: Variant, prompt: str, tokens: int) -> int:
        model, context = variant
        device = next(model.parameters()).device
        inputs = tokenizer([prompt], return_tensors="pt", add_special_tokens=add_special).to(device)
        with context() if context is not None else nullcontext():
            output = model.generate(**inputs, **decoding_kwargs(tokenizer, 0, tokens, fixed_length=True))
        return int(output.shape[1] if spec.is_encoder_decoder else output.shape[1] - inputs["input_ids"].shape[1])

    names = list(variants)
    for name in names:  # warm-up: first-call allocations and kernel selection are not latency
        run(variants[name], prompts[0], 2)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    tokens = dict.fromkeys(names, 0)
    gpu_peak = dict.fromkeys(names, 0)
    for i, prompt in enumerate(prompts):
        for name in names[i % len(names):] + names[: i % len(names)]:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            _sync()
            started = time.perf_counter()
            tokens[name] += run(variants[name], prompt, max_new_tokens)
            _sync()
            seconds[name].append(time.perf_counter() - started)
            if torch.cuda.is_available():
                gpu_peak[name] = max(gpu_peak[name], torch.cuda.max_memory_allocated())
    out = {}
    for name in names:
        stats = {
            "latency_mean_s": statistics.fmean(seconds[name]),
            "latency_p50_s": statistics.median(seconds[name]),
            "latency_p95_s": percentile(seconds[name], 0.95),
            "tokens_per_s": tokens[name] / max(sum(seconds[name]), 1e-9),
            "answers": float(len(prompts)),
            "new_tokens_per_answer": tokens[name] / len(prompts),
        }
        if torch.cuda.is_available():
            stats["gpu_peak_bytes"] = float(gpu_peak[name])
        out[name] = stats
    return out


def time_generation(model: Any, tokenizer: PreTrainedTokenizerBase, spec: ModelSpec, prompts: Sequence[str],
                    max_new_tokens: int) -> dict[str, float]:
    """:func:`time_variants` for one model."""
    return time_variants({"model": (model, None)}, tokenizer, spec, prompts, max_new_tokens).get("model", {})


@contextmanager
def merged_copy(peft_model: Any) -> Iterator[torch.nn.Module]:
    """A deep copy of a PEFT model with its adapter merged into the weights (``merge_and_unload``); the
    caller's model, base weights and adapter stay untouched."""
    merged = copy.deepcopy(peft_model).merge_and_unload()
    merged.eval()
    try:
        yield merged
    finally:
        del merged
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
