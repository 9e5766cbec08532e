#!/usr/bin/env python3
"""LoRA vs full fine-tuning on the embedded SmolLM2-135M: same data, steps, seed and learning-rate schedule.

The original note claims LoRA cuts trainable parameters, memory and storage by large factors. This measures
it instead of quoting it. Each mode runs in its own child process so its peak RSS (and peak VRAM on CUDA) is
its own:

- trained parameters, wall time of the training steps, peak RSS / VRAM;
- validation loss before and after (the same held-out built-in questions for both modes);
- closed-book answers to those held-out questions, from the base and from each trained model: BLEU, ROUGE-L
  and terminology recall, with paired-bootstrap intervals (LoRA − base, full − base, full − LoRA);
- saved size: the LoRA adapter (``save_pretrained`` of the PEFT model) vs the full model (safetensors);
- "several specialties from one base": 3 adapters + 1 base vs 3 full models, from the measured sizes.

Both modes use AdamW with the same steps, batch and seed; the learning rate differs by design (LoRA's usual
1e-3 for the demo preset, 5e-5 for full fine-tuning — 1e-3 on all weights diverges), and is printed.

Usage: ``python bench/lora_vs_full.py [--steps 24] [--max-length 128] [--batch 4]``
→ ``bench/results/lora_vs_full.json``
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BASE = "embedded:smollm2-135m-instruct"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _batches(rows: list[dict], batch: int, steps: int, seed: int, pad_id: int):
    import torch

    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch:
        chunk = list(range(len(rows)))
        rng.shuffle(chunk)
        order += chunk
    for step in range(steps):
        yield _collate([rows[i] for i in order[step * batch:(step + 1) * batch]], pad_id, torch)


def _collate(items: list[dict], pad_id: int, torch):
    width = max(len(r["input_ids"]) for r in items)

    def pad(key, value):
        return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in items])

    return {"input_ids": pad("input_ids", pad_id), "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100)}


def _val_loss(model, rows: list[dict], pad_id: int) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = {k: v.to(model.device) for k, v in _collate(rows[start:start + 8], pad_id, torch).items()}
            losses.append(float(model(**batch).loss))
    model.train()
    return sum(losses) / len(losses)


def _answers(model, loaded, records, max_new_tokens: int) -> list[str]:
    """Closed-book answers through medlora's one generation path (greedy, loop stop)."""
    from medlora.models.generation import generate_answers
    from medlora.models.prompts import build_prompt

    model.eval()
    prompts = [build_prompt(loaded.tokenizer, loaded.spec, r.question) for r in records]
    answers = generate_answers(model, loaded.tokenizer, loaded.spec, prompts, max_new_tokens=max_new_tokens,
                               batch_size=16)
    model.train()
    return [a.text for a in answers]


def split_records(seed: int) -> dict:
    """The built-in dermatology set split by focus, 10 % validation: the same records in every process."""
    from medlora.data.prepare import builtin_dataset_path
    from medlora.data.sources.json_pairs import iter_json_pairs
    from medlora.data.splits import split_by_group

    return split_by_group(list(iter_json_pairs(builtin_dataset_path("dermatology"))), 0.1, 0.0, seed)


def run_mode(mode: str, steps: int, max_length: int, batch: int, seed: int, out: Path, base: str = BASE,
             answer_samples: int = 30, answer_tokens: int = 64) -> dict:
    """Train one mode in this process and return its measurements."""
    import torch
    from peft import get_peft_model

    from medlora.config import TrainingConfig
    from medlora.models.loading import load_base_model
    from medlora.training.encoding import encode_record
    from medlora.training.lora import build_lora_config

    torch.manual_seed(seed)
    random.seed(seed)
    loaded = load_base_model(base)
    tok, spec = loaded.tokenizer, loaded.spec
    splits = split_records(seed)
    answered = splits["validation"][:answer_samples]
    encode = lambda r: encode_record(tok, spec, r.question, r.answer, max_length)  # noqa: E731
    train_rows = [encode(r) for r in splits["train"]]
    val_rows = [encode(r) for r in splits["validation"]][:32]
    pad_id = tok.pad_token_id

    model = loaded.model
    if mode == "lora":
        model = get_peft_model(model, build_lora_config(TrainingConfig(), spec))
        lr = 1e-3
    else:
        lr = 5e-5
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    val_before = _val_loss(model, val_rows, pad_id)
    # LoRA starts as the base (B = 0), so its answers before training are the base's.
    base_answers = _answers(model, loaded, answered, answer_tokens) if mode == "lora" and answered else []
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    losses = []
    for batch_data in _batches(train_rows, batch, steps, seed, pad_id):
        batch_data = {k: v.to(model.device) for k, v in batch_data.items()}
        loss = model(**batch_data).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    seconds = time.perf_counter() - started
    val_after = _val_loss(model, val_rows, pad_id)
    answers = _answers(model, loaded, answered, answer_tokens) if answered else []
    save_dir = out / mode
    model.save_pretrained(save_dir)  # LoRA: adapter only; full: the whole model (safetensors)
    result = {
        "mode": mode, "learning_rate": lr, "steps": steps, "batch_size": batch, "max_length": max_length,
        "seed": seed, "train_examples": len(train_rows), "validation_examples": len(val_rows),
        "trainable_params": trainable, "total_params": total,
        "train_seconds": round(seconds, 2), "seconds_per_step": round(seconds / steps, 3),
        "first_train_loss": round(losses[0], 4), "last_train_loss": round(losses[-1], 4),
        "val_loss_before": round(val_before, 4), "val_loss_after": round(val_after, 4),
        "saved_bytes": _dir_bytes(save_dir),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(loaded.device),
        "answers": answers,
    }
    if base_answers:
        result["base_answers"] = base_answers
    if torch.cuda.is_available():
        result["peak_vram_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--base", default=BASE, help="base model (default: the embedded SmolLM2-135M)")
    parser.add_argument("--answer-samples", type=int, default=30, help="held-out questions answered closed-book")
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--mode", choices=["lora", "full"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS / "lora_vs_full.json"))
    args = parser.parse_args()

    if args.mode:
        result = run_mode(args.mode, args.steps, args.max_length, args.batch, args.seed, Path(args.workdir),
                          args.base, args.answer_samples, args.answer_tokens)
        print("RESULT " + json.dumps(result))
        return

    modes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as work:
        for mode in ("lora", "full"):
            cmd = [sys.executable, __file__, "--mode", mode, "--workdir", work, "--steps", str(args.steps),
                   "--max-length", str(args.max_length), "--batch", str(args.batch), "--seed", str(args.seed),
                   "--base", args.base, "--answer-samples", str(args.answer_samples),
                   "--answer-tokens", str(args.answer_tokens)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"{mode} run failed:\n{done.stderr[-3000:]}")
            modes[mode] = json.loads(lines[-1].removeprefix("RESULT "))
            print(f"{mode}: {modes[mode]}")
    lora, full = modes["lora"], modes["full"]
    summary = {
        "trainable_params_ratio_full_over_lora": round(full["trainable_params"] / lora["trainable_params"], 1),
        "trainable_percent_lora": round(100 * lora["trainable_params"] / lora["total_params"], 3),
        "peak_rss_ratio_full_over_lora": round(full["peak_rss_mib"] / lora["peak_rss_mib"], 2),
        "time_ratio_full_over_lora": round(full["train_seconds"] / lora["train_seconds"], 2),
        "saved_size_ratio_full_over_lora": round(full["saved_bytes"] / lora["saved_bytes"], 1),
        # Three specialties: one base + 3 adapters vs 3 full models (the base is the full model's size).
        "three_specialties_lora_bytes": full["saved_bytes"] + 3 * lora["saved_bytes"],
        "three_specialties_full_bytes": 3 * full["saved_bytes"],
    }
    report = {
        "closed_book": closed_book_scores(modes, args.seed),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "base": args.base, "data": "built-in dermatology set, split by focus (validation 10 %)",
        "modes": modes, "summary": summary,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    Path(args.output).with_suffix(".md").write_text(markdown_table(report), encoding="utf-8")
    print(markdown_table(report))


CLOSED_BOOK_METRICS = ("rouge_l", "bleu", "terminology_recall")


def closed_book_scores(modes: dict[str, dict], seed: int) -> dict:
    """Scores of the base, LoRA and full answers on the same held-out questions, and paired intervals."""
    from medlora.evaluation.bootstrap import paired_bootstrap
    from medlora.evaluation.metrics import EvalSample, get_metric
    from medlora.evaluation.vocabulary import load_vocabulary

    answers = {"base": modes["lora"].get("base_answers", []), "lora": modes["lora"]["answers"],
               "full": modes["full"]["answers"]}
    if not answers["base"]:
        return {}
    records = split_records(seed)["validation"][: len(answers["base"])]
    extras = {"vocabulary": load_vocabulary("dermatology")}
    samples = {name: [EvalSample(r, text, extras) for r, text in zip(records, texts, strict=True)]
               for name, texts in answers.items()}
    out: dict = {"questions": len(records), "scores": {}, "intervals": {}}
    for metric_name in CLOSED_BOOK_METRICS:
        metric = get_metric(metric_name)
        out["scores"][metric_name] = {name: metric.compute(group) for name, group in samples.items()}
        for first, second in (("base", "lora"), ("base", "full"), ("lora", "full")):
            delta = paired_bootstrap(metric, samples[first], samples[second], seed=seed)
            out["intervals"][f"{metric_name}:{second}-{first}"] = delta.to_json() if delta else None
    return out


def _interval(iv: dict | None, percent: bool) -> str:
    if not iv:
        return "–"
    f = (lambda x: f"{100 * x:+.1f} pp") if percent else (lambda x: f"{x:+.3f}")
    return f"{f(iv['delta'])} [{f(iv['low'])}, {f(iv['high'])}]"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def markdown_table(report: dict) -> str:
    """The LoRA-vs-full table docs/BENCHMARKS.md shows, from a results file."""
    lora, full, summary = report["modes"]["lora"], report["modes"]["full"], report["summary"]
    rows = [
        ("trained parameters", f"{lora['trainable_params']:,} ({summary['trainable_percent_lora']} %)",
         f"{full['trainable_params']:,} (100 %)"),
        ("peak RAM (RSS)", f"{lora['peak_rss_mib']:,.0f} MiB", f"{full['peak_rss_mib']:,.0f} MiB"),
        ("training time", f"{lora['train_seconds']:.0f} s ({lora['seconds_per_step']:.1f} s/step)",
         f"{full['train_seconds']:.0f} s ({full['seconds_per_step']:.1f} s/step)"),
        ("saved size", _mib(lora["saved_bytes"]), _mib(full["saved_bytes"])),
        ("validation loss before → after", f"{lora['val_loss_before']:.3f} → {lora['val_loss_after']:.3f}",
         f"{full['val_loss_before']:.3f} → {full['val_loss_after']:.3f}"),
        ("3 specialties on disk", f"{_mib(summary['three_specialties_lora_bytes'])} (1 base + 3 adapters)",
         f"{_mib(summary['three_specialties_full_bytes'])} (3 models)"),
    ]
    if "peak_vram_mib" in lora:
        rows.insert(2, ("peak VRAM", f"{lora['peak_vram_mib']:,.0f} MiB", f"{full['peak_vram_mib']:,.0f} MiB"))
    closed = report.get("closed_book") or {}
    labels = {"rouge_l": "ROUGE-L", "bleu": "BLEU", "terminology_recall": "terminology recall"}
    for name in CLOSED_BOOK_METRICS if closed else ():
        sc, iv, percent = closed["scores"][name], closed["intervals"], name == "terminology_recall"

        def show(x: float | None) -> str:
            return "–" if x is None else (f"{100 * x:.1f} %" if percent else f"{x:.3f}")  # noqa: B023

        rows.append((f"closed-book {labels[name]}, {closed['questions']} held-out questions (base {show(sc['base'])})",
                     f"{show(sc['lora'])}; vs base {_interval(iv[f'{name}:lora-base'], percent)}",
                     f"{show(sc['full'])}; vs base {_interval(iv[f'{name}:full-base'], percent)}; "
                     f"vs LoRA {_interval(iv[f'{name}:full-lora'], percent)}"))
    lines = ["| | LoRA (r 8, q_proj/v_proj) | full fine-tuning |", "| --- | --- | --- |"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
