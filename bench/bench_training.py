"""Benchmark 1: ``medlora train`` against the original note's training script, in one process, same data.

Baseline, as the note's script trains: ``Trainer``, every example padded to ``max_length`` 512, batch 2,
the loss on the whole sequence (prompt and answer; pad positions masked as ``DataCollatorForLanguageModeling``
does), fp32, torch's default threads. medlora: :func:`medlora.training.trainer.train_adapter` with its
defaults (padding-free packing, answer-only loss, the probe's precision and threads). Both: same base, same
records and prompts, same seed, batch 2 × grad-accum 4, same learning rate and number of optimizer steps.

Reported: real (non-pad) tokens/s and wall time; the validation loss of both adapters measured the same way
(answer tokens, on held-out records); and the achieved FLOP rate as a share of the fp32 (and bf16) matmul
peak measured here. FLOPs per token = 4 × matmul parameters (forward 2N, input gradients 2N; the frozen base
needs no weight gradients) — a lower bound, attention scores not counted.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from medlora.config import MedloraConfig
from medlora.data.prepare import load_split
from medlora.models.loading import LoadedModel, load_base_model
from medlora.models.precision import matmul_gflops, probe, torch_threads, usable_cores
from medlora.models.prompts import build_prompt
from medlora.training.batching import padded_collator
from medlora.models.prompts import prompt_uses_special_tokens
from medlora.training.encoding import build_dataset, grounded_rows
from medlora.training.lora import build_lora_config
from medlora.training.trainer import grounding_of, train_adapter, training_index

NOTE_MAX_LENGTH = 512


def _bench_data(source_dir: Path, out: Path, n_train: int) -> Path:
    """The first ``n_train`` training records with an empty validation split: timing covers training only."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in (source_dir / "train.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    (out / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n", encoding="utf-8")
    (out / "validation.jsonl").write_text("", encoding="utf-8")
    shutil.copy(source_dir / "manifest.json", out / "manifest.json")
    return out


def validation_loss(loaded: LoadedModel, model: torch.nn.Module, records: list, max_length: int) -> float:
    """Mean loss per answer token on ``records`` (prompt tokens excluded), the same for every adapter."""
    dataset = build_dataset(records, loaded.tokenizer, loaded.spec, max_length)
    rows = [dataset[i] for i in range(len(dataset))]
    collate = padded_collator(loaded.tokenizer)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), 4):
            batch = collate(rows[start:start + 4])
            tokens = int((batch["labels"][:, 1:] != -100).sum())
            total += model(**batch, use_cache=False).loss.item() * tokens
            count += tokens
    return total / max(count, 1)


def _note_baseline(loaded: LoadedModel, cfg: MedloraConfig, data_dir: Path, out: Path) -> dict[str, Any]:
    """Train as the original note's script: pad to 512, batch 2, loss on the whole sequence."""
    tcfg = cfg.training
    tok, spec = loaded.tokenizer, loaded.spec
    records = load_split(data_dir, "train")
    # the same prompts (and retrieved sources) medlora trains on
    rows = grounded_rows(records, grounding_of(tcfg), tcfg.seed, **training_index(cfg, data_dir))
    add_special = prompt_uses_special_tokens(tok, spec)
    texts = [build_prompt(tok, spec, r.question, s) + answer + tok.eos_token for r, s, answer in rows]
    encoded = tok(texts, padding="max_length", truncation=True, max_length=NOTE_MAX_LENGTH,
                  add_special_tokens=add_special)
    dataset = [{"input_ids": ids, "attention_mask": mask}
               for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)]
    real_tokens = sum(sum(mask) for mask in encoded["attention_mask"])
    torch.manual_seed(tcfg.seed)
    model = get_peft_model(loaded.model, build_lora_config(tcfg.model_copy(update={"lora_targets": "qv"}), spec))
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=tcfg.epochs, per_device_train_batch_size=2,
        gradient_accumulation_steps=tcfg.gradient_accumulation_steps, learning_rate=tcfg.learning_rate,
        warmup_steps=tcfg.warmup_ratio, max_grad_norm=tcfg.max_grad_norm, logging_steps=1000, save_strategy="no",
        report_to=[], seed=tcfg.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    return {"model": model, "seconds": seconds, "real_tokens": int(real_tokens * tcfg.epochs),
            "computed_tokens": int(len(dataset) * NOTE_MAX_LENGTH * tcfg.epochs),
            "train_loss": output.training_loss, "steps": trainer.state.global_step,
            "threads": torch.get_num_threads(), "precision": "fp32"}


def run(model_name: str, source_data: Path, work: Path, *, n_train: int, n_val: int) -> dict[str, Any]:
    data_dir = _bench_data(source_data, work / "bench-data", n_train)
    val_records = load_split(source_data, "validation")[:n_val]
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": model_name, "training.epochs": 1, "training.max_length": NOTE_MAX_LENGTH,
        "training.batch_size": 2, "training.gradient_accumulation_steps": 4, "training.learning_rate": 3e-4,
        "training.save_steps": 10_000, "training.logging_steps": 1000, "training.seed": 42,
    })
    machine = probe()
    peak_threads = max(machine.threads, 1)
    with torch_threads(peak_threads):
        fp32_peak = max(matmul_gflops(2048, torch.float32, torch.device("cpu"), budget_s=1.0),
                        machine.fp32_gflops)
    all_cores_peak = matmul_gflops(2048, torch.float32, torch.device("cpu"), budget_s=1.0) \
        if usable_cores() != peak_threads else fp32_peak
    fp32_peak = max(fp32_peak, all_cores_peak)
    best_peak = max(fp32_peak, machine.bf16_gflops)

    # Baseline first, then medlora, each on a freshly loaded base.
    base = load_base_model(model_name)
    matmul_params = sum(p.numel() for n, p in base.model.named_parameters() if p.dim() == 2 and "embed" not in n)
    if getattr(base.model.config, "tie_word_embeddings", False):
        matmul_params += base.model.get_input_embeddings().weight.numel()  # the tied output head is a matmul
    flops_per_token = 4 * matmul_params
    baseline = _note_baseline(base, cfg, data_dir, work / "baseline")
    baseline_val = validation_loss(base, baseline.pop("model"), val_records, NOTE_MAX_LENGTH)

    torch.manual_seed(42)
    loaded = load_base_model(model_name)
    result = train_adapter(cfg, data_dir, work / "medlora-adapter", loaded=loaded)
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(load_base_model(model_name).model, str(work / "medlora-adapter"))
    medlora_val = validation_loss(loaded, adapted, val_records, NOTE_MAX_LENGTH)
    card = json.loads((work / "medlora-adapter" / "medlora.json").read_text())

    def summary(seconds: float, real_tokens: int) -> dict[str, float]:
        rate = real_tokens / seconds
        gflops = rate * flops_per_token / 1e9
        return {"seconds": round(seconds, 2), "real_tokens": real_tokens, "tokens_per_s": round(rate, 1),
                "gflops": round(gflops, 2), "share_of_fp32_peak": round(gflops / fp32_peak, 3),
                "share_of_best_peak": round(gflops / best_peak, 3)}

    return {
        "records": n_train, "validation_records": len(val_records), "max_length": NOTE_MAX_LENGTH,
        "flops_per_token": flops_per_token, "fp32_peak_gflops": round(fp32_peak, 1),
        "bf16_peak_gflops": round(machine.bf16_gflops, 2), "probe": {"precision": machine.precision,
                                                                    "threads": machine.threads,
                                                                    "gflops_by_threads": machine.gflops_by_threads},
        "baseline": {**summary(baseline["seconds"], baseline["real_tokens"]),
                     "computed_tokens": baseline["computed_tokens"], "validation_loss": round(baseline_val, 4),
                     "steps": baseline["steps"], "threads": baseline["threads"], "precision": "fp32"},
        "medlora": {**summary(result.seconds, result.train_tokens), "validation_loss": round(medlora_val, 4),
                    "steps": result.steps_run, "threads": result.threads or torch.get_num_threads(),
                    "precision": result.precision, "batching": card["hyperparameters"].get("batching")},
        "speedup_tokens_per_s": round((result.train_tokens / result.seconds)
                                      / (baseline["real_tokens"] / baseline["seconds"]), 2),
        "wall_ratio": round(result.seconds / baseline["seconds"], 3),
    }
