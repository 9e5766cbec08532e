"""bench/lora_vs_full.py on the tiny random Llama: both modes run in child processes and the table adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT


def test_lora_vs_full_bench_runs_and_compares(tiny_llama_dir, tmp_path):
    out = tmp_path / "lora_vs_full.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "lora_vs_full.py"), "--base", str(tiny_llama_dir),
         "--steps", "2", "--max-length", "32", "--batch", "2", "--answer-samples", "4", "--answer-tokens", "6",
         "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    lora, full = report["modes"]["lora"], report["modes"]["full"]
    assert lora["steps"] == full["steps"] == 2 and lora["seed"] == full["seed"]
    assert lora["train_examples"] == full["train_examples"]  # same data
    # LoRA starts as the base model (B = 0): same model, same validation data, same loss before training.
    assert lora["val_loss_before"] == pytest.approx(full["val_loss_before"], rel=1e-4)
    assert full["trainable_params"] == full["total_params"] > lora["trainable_params"] > 0
    assert full["saved_bytes"] > lora["saved_bytes"] > 0
    summary = report["summary"]
    assert summary["three_specialties_full_bytes"] == 3 * full["saved_bytes"]
    assert summary["three_specialties_lora_bytes"] == full["saved_bytes"] + 3 * lora["saved_bytes"]
    # Closed-book answers: the base's (LoRA before training), LoRA's and full's, on the same 4 questions.
    closed = report["closed_book"]
    assert closed["questions"] == 4 == len(lora["base_answers"]) == len(lora["answers"]) == len(full["answers"])
    assert set(closed["scores"]["rouge_l"]) == {"base", "lora", "full"}
    for key in ("rouge_l:lora-base", "rouge_l:full-base", "rouge_l:full-lora"):
        iv = closed["intervals"][key]
        assert iv["n"] == 4 and iv["low"] <= iv["delta"] <= iv["high"]
    table = out.with_suffix(".md").read_text()
    assert "closed-book ROUGE-L, 4 held-out questions" in table
