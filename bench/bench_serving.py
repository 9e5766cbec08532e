"""Benchmarks 2-5: adapter overhead, many adapters, mixed batches and the bot, through medlora's own code.

2. base / unmerged / merged: the same 8 prompts, greedy, paired rounds (order rotated), ratio to the base
   per round with a 95 % interval.
3. adapters, through ``LLMService`` as ``medlora serve`` runs it: load time from disk (r 8), switching the
   default adapter, RSS per loaded adapter, and 8-prompt throughput with 1, 4 and 16 adapters loaded.
4. mixed batch: 8 requests over 4 adapters answered in one ``answer_batch`` vs 8 serial ``answer`` calls.
5. the bot: a streamed answer to a question with 3 retrieved sources: time to the first piece and to the
   end, against the same question with no sources (the prompt without the prefill of 3 sources).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import median_time, paired_ratios, rss_mb, t_interval, wall
from peft import LoraConfig, PeftModel, get_peft_model

from medlora.config import MedloraConfig
from medlora.models.generation import generate_batch
from medlora.models.loading import load_base_model
from medlora.models.prompts import build_prompt
from medlora.service.llm_service import LLMService
from medlora.retrieval import SourceIndex, sources_from_records
from medlora.service.routing import builtin_records
from medlora.adapters.metadata import write_metadata

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


def make_adapters(model_name: str, out: Path, count: int, *, r: int = 8) -> list[Path]:
    """``count`` random r-``r`` q/v adapters (A and B drawn away from zero), saved as ``medlora train`` does."""
    loaded = load_base_model(model_name)
    model = get_peft_model(loaded.model, LoraConfig(r=r, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                    target_modules=list(loaded.spec.target_modules)))
    paths = []
    for i in range(count):
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.normal_(std=0.02)
        path = out / f"lora-bench{i}-adapter"
        model.save_pretrained(path, safe_serialization=True)
        config_path = path / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = loaded.source.base_model_id
        config_path.write_text(json.dumps(config))
        write_metadata(path, {"specialty": f"bench{i}", "base_model": {"id": loaded.source.base_model_id,
                                                                       "name": loaded.source.name},
                              "hyperparameters": {"r": r}})
        paths.append(path)
    return paths


def overhead(model_name: str, adapter: Path, *, new_tokens: int, rounds: int) -> dict[str, Any]:
    loaded = load_base_model(model_name)
    tok, spec = loaded.tokenizer, loaded.spec
    prompts = [build_prompt(tok, spec, q) for q in QUESTIONS]
    merged = PeftModel.from_pretrained(copy.deepcopy(loaded.model), str(adapter)).merge_and_unload().eval()
    peft_model = PeftModel.from_pretrained(loaded.model, str(adapter)).eval()

    def run(model: Any) -> None:
        generate_batch(model, tok, spec, prompts, max_new_tokens=new_tokens)

    def base() -> None:
        with peft_model.disable_adapter():
            run(peft_model)

    result = paired_ratios({"base": base, "unmerged": lambda: run(peft_model), "merged": lambda: run(merged)},
                           "base", rounds)
    result["prompts"], result["new_tokens"] = len(prompts), new_tokens
    return result


def _service(model_name: str, adapters_dir: Path, **overrides: Any) -> LLMService:
    cfg = MedloraConfig().with_overrides({"models.llm.name": model_name, "models.llm.adapters_dir": str(adapters_dir),
                                          "models.llm.use_medical_adapter": False, "service.retrieval": False,
                                          **overrides})
    service = LLMService(cfg)
    service.load_model()
    return service


def adapters(model_name: str, paths: list[Path], empty_dir: Path, *, new_tokens: int, repeats: int,
             counts: tuple[int, ...] = (1, 4, 16)) -> dict[str, Any]:
    service = _service(model_name, empty_dir)
    names = [f"a{i}" for i in range(len(paths))]
    first = names[0]
    rss_before = rss_mb()
    load_s: list[float] = []
    throughput: dict[str, float] = {}
    rss_after: dict[str, float] = {}
    loaded_count = 0
    for count in counts:
        while loaded_count < count:
            load_s.append(wall(lambda: service.load_adapter(names[loaded_count], paths[loaded_count])))  # noqa: B023
            loaded_count += 1
        seconds = median_time(lambda: service.answer_batch(QUESTIONS, [first] * len(QUESTIONS),
                                                           max_new_tokens=new_tokens), repeats)
        throughput[str(count)] = len(QUESTIONS) * new_tokens / seconds
        # Read after this count's generations, never before the first one: the base weights are memory-mapped
        # and only paged in by the first forward pass (~500 MiB on SmolLM2-135M), which a reading taken before
        # it would charge to the adapters loaded next.
        rss_after[str(count)] = rss_mb()
    switch_s = [wall(lambda: service.set_adapter(names[i % loaded_count])) for i in range(1, 41)]  # noqa: B023
    # RSS per adapter: from the first loaded adapter to the last (the first also builds PEFT's wrappers).
    per_adapter_mb = (rss_after[str(counts[-1])] - rss_after[str(counts[0])]) / max(counts[-1] - counts[0], 1)
    peft = service.generation_model
    lora_bytes = sum(p.numel() * p.element_size() for n, p in peft.named_parameters() if ".lora_" in n)
    base_tp = throughput[str(counts[0])]
    return {
        "load_ms": {"first": round(1000 * load_s[0], 1), "median_rest": round(1000 * statistics.median(load_s[1:]), 1)
                    if len(load_s) > 1 else None},
        "switch_ms": {"median": round(1000 * statistics.median(switch_s), 3), "max": round(1000 * max(switch_s), 3)},
        "rss_mb": {"before": round(rss_before, 1), **{k: round(v, 1) for k, v in rss_after.items()}},
        "rss_per_adapter_mb": round(per_adapter_mb, 2),
        "lora_tensors_per_adapter_mb": round(lora_bytes / loaded_count / 2**20, 2),
        "adapter_file_mb": round(sum(f.stat().st_size for f in paths[0].iterdir()) / 2**20, 2),
        "tokens_per_s": {k: round(v, 2) for k, v in throughput.items()},
        "throughput_vs_1": {k: round(v / base_tp, 3) for k, v in throughput.items()},
        "service": service,
    }


def mixed(service: LLMService, *, new_tokens: int, repeats: int) -> dict[str, Any]:
    names = [a.name for a in service.list_adapters()][:4]
    per_request = [names[i % len(names)] for i in range(len(QUESTIONS))]

    def one_pass() -> None:
        service.answer_batch(QUESTIONS, per_request, max_new_tokens=new_tokens)

    def serial() -> None:
        for question, name in zip(QUESTIONS, per_request, strict=True):
            service.set_adapter(name)
            service.answer(question, name, max_new_tokens=new_tokens)

    result = paired_ratios({"serial": serial, "mixed": one_pass}, "serial", repeats)
    mean, low, high = t_interval([1 / r for r in _ratios(result)])
    result["speedup"] = {"mean": mean, "ci95": [low, high]}
    result["adapters"], result["requests"] = len(names), len(QUESTIONS)
    return result


def _ratios(result: dict[str, Any]) -> list[float]:
    return [m / s for m, s in zip(result["seconds"]["mixed"], result["seconds"]["serial"], strict=True)]


def bot(model_name: str, empty_dir: Path, *, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Streamed answer with 3 retrieved sources vs the same question without sources."""
    records = builtin_records("dermatology") + builtin_records("cardiology")
    index = SourceIndex.build(sources_from_records(records, "builtin"))
    question = "How is plaque psoriasis treated?"
    out: dict[str, Any] = {}
    for label, top_k in (("no_sources", 0), ("three_sources", 3)):
        cfg = MedloraConfig().with_overrides({
            "models.llm.name": model_name, "models.llm.adapters_dir": str(empty_dir),
            "models.llm.use_medical_adapter": False, "service.retrieval": top_k > 0,
            "service.top_k_sources": max(top_k, 1), "service.max_new_tokens": new_tokens})
        service = LLMService(cfg, index=index)
        service.load_model()
        first, total, sources, prompt_tokens = [], [], 0, 0
        for i in range(repeats + 1):
            started = time.perf_counter()
            stream = service.stream(question, "base")
            first_at = None
            for _ in stream:
                if first_at is None:
                    first_at = time.perf_counter() - started
            if i == 0:
                continue  # warm-up
            first.append(first_at if first_at is not None else math_nan())
            total.append(time.perf_counter() - started)
            sources = len(stream.sources)
            prompt_tokens = len(service.loaded_model.tokenizer(service._prompt(question, stream.sources))["input_ids"])
        out[label] = {"first_token_s": round(statistics.median(first), 3),
                      "end_to_end_s": round(statistics.median(total), 3),
                      "sources": sources, "prompt_tokens": prompt_tokens}
    out["new_tokens"] = new_tokens
    out["first_token_vs_no_sources"] = round(
        out["three_sources"]["first_token_s"] / out["no_sources"]["first_token_s"], 2)
    return out


def math_nan() -> float:
    return float("nan")


def precision_quality(model_name: str, *, new_tokens: int) -> dict[str, Any]:
    """bf16 autocast vs fp32 at equal inputs: greedy answers identical? answer-token loss difference?

    Run when the probe picks bf16 (or ``--compare-bf16``): speed alone must not switch the precision.
    """
    from medlora.models.precision import autocast, set_process_precision
    from medlora.training.batching import padded_collator
    from medlora.training.encoding import build_dataset

    loaded = load_base_model(model_name)
    tok, spec = loaded.tokenizer, loaded.spec
    prompts = [build_prompt(tok, spec, q) for q in QUESTIONS]
    records = (builtin_records("dermatology") + builtin_records("cardiology"))[:16]
    batch = padded_collator(tok)([r for r in build_dataset(records, tok, spec, 256)])
    answers, losses, seconds = {}, {}, {}
    try:
        for choice in ("fp32", "bf16"):
            set_process_precision(choice)
            started = time.perf_counter()
            generated = generate_batch(loaded.model, tok, spec, prompts, max_new_tokens=new_tokens)
            answers[choice] = [g.text for g in generated]
            seconds[choice] = time.perf_counter() - started
            with torch.no_grad(), autocast(choice, loaded.device):  # type: ignore[arg-type]
                losses[choice] = loaded.model(**batch, use_cache=False).loss.item()
    finally:
        set_process_precision(None)
    same = sum(a == b for a, b in zip(answers["fp32"], answers["bf16"], strict=True))
    return {"greedy_identical": same, "prompts": len(prompts), "loss_fp32": round(losses["fp32"], 4),
            "loss_bf16": round(losses["bf16"], 4), "loss_difference": round(losses["bf16"] - losses["fp32"], 4),
            "generation_s": {k: round(v, 3) for k, v in seconds.items()}}
