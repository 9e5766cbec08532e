#!/usr/bin/env python3
"""Speed and memory of adapters on the embedded SmolLM2-135M, as ratios against a baseline in the same run.

Measured here (all greedy, same prompts, same token budget):

- batching: 8 prompts in one ``generate`` batch vs one at a time (tokens/s ratio);
- adapter overhead: unmerged LoRA vs the base, and merged (``merge_and_unload``) vs the base (latency ratios);
- mixed batches: two adapters served in one batch with PEFT ``adapter_names`` vs switching adapters between
  two single-adapter batches (latency ratio);
- memory: bytes the adapter adds, and peak RSS.

The LoRA weights are random (B perturbed away from zero) — speed does not depend on trained values, and this
keeps the benchmark self-contained. Results go to ``bench/results/latest.json`` and ``latest.md``.

Usage: ``python bench/run_benchmarks.py [--new-tokens 32] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from medlora.models.generation import generate_batch
from medlora.models.loading import load_base_model
from medlora.models.prompts import build_prompt

QUESTIONS = [
    "What are the ABCDE criteria for melanoma?",
    "How is plaque psoriasis treated?",
    "What does dermoscopy show in basal cell carcinoma?",
    "How is atopic dermatitis distinguished from contact dermatitis?",
    "What is the first-line treatment of acne vulgaris?",
    "How is atrial fibrillation managed?",
    "What are the signs of heart failure?",
    "What is Breslow thickness?",
]
RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def add_random_adapter(model, name: str, seed: int):
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    if hasattr(model, "add_adapter") and hasattr(model, "peft_config"):
        model.add_adapter(name, config)
    else:
        model = get_peft_model(model, config, adapter_name=name)
    for param_name, param in model.named_parameters():
        if "lora_B" in param_name and f".{name}." in param_name:
            torch.nn.init.normal_(param, std=0.02)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_base_model("embedded:smollm2-135m-instruct")
    tok, spec = loaded.tokenizer, loaded.spec
    prompts = [build_prompt(tok, spec, q) for q in QUESTIONS]
    n = args.new_tokens

    def run(model, batch, **kw):
        return generate_batch(model, tok, spec, batch, max_new_tokens=n, **kw)

    results: dict[str, dict] = {}

    # 1. batching
    sequential = timed(lambda: [run(loaded.model, [p]) for p in prompts], args.repeats)
    batched = timed(lambda: run(loaded.model, prompts), args.repeats)
    tokens = sum(g.new_tokens for g in run(loaded.model, prompts))
    results["batching"] = {
        "sequential_s": sequential, "batched_s": batched,
        "sequential_tokens_per_s": tokens / sequential, "batched_tokens_per_s": tokens / batched,
        "speedup": sequential / batched,
    }

    # 2. adapter overhead (unmerged vs base vs merged), batch of 8
    base_s = batched
    model = add_random_adapter(loaded.model, "dermatology", seed=1)
    model.eval()
    unmerged_s = timed(lambda: run(model, prompts), args.repeats)
    adapter_bytes = sum(p.numel() * p.element_size() for name, p in model.named_parameters() if "lora_" in name)

    # 3. mixed batch: two adapters in one batch vs switching between two half batches
    model = add_random_adapter(model, "cardiology", seed=2)
    model.eval()
    names = ["dermatology", "cardiology"] * (len(prompts) // 2)
    mixed_s = timed(lambda: run(model, prompts, adapter_names=names), args.repeats)

    def switching():
        for adapter in ("dermatology", "cardiology"):
            model.set_adapter(adapter)
            run(model, [p for p, a in zip(prompts, names, strict=True) if a == adapter])

    switching_s = timed(switching, args.repeats)
    results["mixed_batch"] = {"mixed_one_batch_s": mixed_s, "switching_two_batches_s": switching_s,
                              "speedup": switching_s / mixed_s}

    model.set_adapter("dermatology")
    model.delete_adapter("cardiology")
    merged = model.merge_and_unload()
    merged.eval()
    merged_s = timed(lambda: run(merged, prompts), args.repeats)
    results["adapter_overhead"] = {
        "base_s": base_s, "unmerged_s": unmerged_s, "merged_s": merged_s,
        "unmerged_vs_base": unmerged_s / base_s, "merged_vs_base": merged_s / base_s,
        "merged_vs_unmerged": merged_s / unmerged_s,
    }
    results["memory"] = {
        "adapter_bytes": adapter_bytes,
        "base_parameter_bytes": sum(p.numel() * p.element_size() for p in merged.parameters()),
        "adapter_vs_base": adapter_bytes / sum(p.numel() * p.element_size() for p in merged.parameters()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": loaded.source.base_model_id,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "machine": platform.machine(),
        "torch": torch.__version__,
        "prompts": len(prompts),
        "new_tokens": n,
        "repeats": args.repeats,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (RESULTS / "latest.md").write_text(render(meta, results))
    print(render(meta, results))


def render(meta: dict, r: dict) -> str:
    b, o, m, mem = r["batching"], r["adapter_overhead"], r["mixed_batch"], r["memory"]
    return f"""# Benchmark results

{meta['date']}, {meta['model']}, {meta['device']}, torch {meta['torch']}; {meta['prompts']} prompts,
{meta['new_tokens']} new tokens each, greedy, median of {meta['repeats']} runs after a warm-up.

| what | baseline | measured | ratio |
| --- | --- | --- | --- |
| batching (8 prompts) | one at a time {b['sequential_tokens_per_s']:.1f} tok/s | one batch {b['batched_tokens_per_s']:.1f} tok/s | {b['speedup']:.2f}× faster |
| unmerged LoRA adapter | base {o['base_s']:.2f} s | {o['unmerged_s']:.2f} s | {o['unmerged_vs_base']:.3f}× base |
| merged adapter | base {o['base_s']:.2f} s | {o['merged_s']:.2f} s | {o['merged_vs_base']:.3f}× base ({o['merged_vs_unmerged']:.3f}× unmerged) |
| two adapters, mixed batch | switching, two batches {m['switching_two_batches_s']:.2f} s | one batch {m['mixed_one_batch_s']:.2f} s | {m['speedup']:.2f}× faster |
| adapter memory | base weights {mem['base_parameter_bytes'] / 2**20:.0f} MiB | LoRA weights {mem['adapter_bytes'] / 2**20:.2f} MiB | {100 * mem['adapter_vs_base']:.2f} % |

Peak RSS of the benchmark process: {mem['peak_rss_mb']:.0f} MiB.
"""


if __name__ == "__main__":
    main()
