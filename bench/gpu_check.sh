#!/usr/bin/env bash
# One check for a machine with an NVIDIA GPU, under 5 minutes: 8-bit loading through bitsandbytes, one LoRA
# training step on the 8-bit base, and benchmark 2 (base / unmerged / merged adapter) on CUDA.
# Prints a short table. Usage: bash bench/gpu_check.sh [MODEL]   (default: the embedded SmolLM2-135M)
# Exit codes: 0 ok, 2 no CUDA or no bitsandbytes (nothing measured), 1 a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
MODEL="${1:-embedded:smollm2-135m-instruct}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: error: no CUDA device visible to torch ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda build", torch.version.cuda)' 2>/dev/null || echo 'torch not importable'))." >&2
  echo "gpu_check: run it on a machine with an NVIDIA GPU and a CUDA build of torch; nothing was measured." >&2
  exit 2
fi
if ! "$PY" -c 'import bitsandbytes' 2>/dev/null; then
  echo "gpu_check: error: bitsandbytes is not installed: pip install -e '.[gpu]'" >&2
  exit 2
fi

export TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"
timeout 290 "$PY" - "$MODEL" <<'PY'
import sys, tempfile, time, warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import torch
from peft import get_peft_model, prepare_model_for_kbit_training

from medlora.config import QuantizationConfig, TrainingConfig
from medlora.models.loading import load_base_model
from medlora.models.precision import probe
from medlora.models.prompts import build_prompt
from medlora.training.batching import PackedCollator
from medlora.training.encoding import encode_record
from medlora.training.lora import build_lora_config

model_name = sys.argv[1]
rows: list[tuple[str, str, str]] = []
device = torch.cuda.get_device_name(0)

# 1. 8-bit load through bitsandbytes.
torch.cuda.reset_peak_memory_stats()
started = time.perf_counter()
loaded = load_base_model(model_name, quantization=QuantizationConfig(load_in_8bit=True))
load_s = time.perf_counter() - started
int8 = sum(1 for m in loaded.model.modules() if type(m).__name__ == "Linear8bitLt")
assert int8 > 0, "no Linear8bitLt layer: 8-bit loading did not happen"
rows.append(("8-bit load (bitsandbytes)", f"{load_s:.1f} s, {int8} int8 linears",
             f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB peak"))

# 2. One LoRA training step on the 8-bit base (packed batch of 8 examples).
model = get_peft_model(prepare_model_for_kbit_training(loaded.model), build_lora_config(TrainingConfig(), loaded.spec))
examples = [encode_record(loaded.tokenizer, loaded.spec, f"What is the first-line treatment of condition {i}?",
                          f"Condition {i} is treated with topical therapy number {i} and follow-up.", 256)
            for i in range(8)]
batch = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in PackedCollator()(examples).items()}
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
losses = []
for step in range(3):  # the first step includes CUDA warm-up
    torch.cuda.synchronize(); started = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_bf16_supported()):
        loss = model(**batch).loss
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    torch.cuda.synchronize(); step_s = time.perf_counter() - started
    losses.append(loss.item())
assert all(torch.isfinite(torch.tensor(losses))), f"non-finite loss {losses}"
tokens = batch["input_ids"].numel()
rows.append(("LoRA training step (8-bit base)", f"{step_s * 1000:.0f} ms for {tokens} tokens",
             f"{tokens / step_s:.0f} tok/s, loss {losses[0]:.3f} -> {losses[-1]:.3f}"))
del model, loaded, optimizer
torch.cuda.empty_cache()

# 3. Benchmark 2 on CUDA: base / unmerged / merged, paired rounds with 95 % intervals.
from bench_serving import make_adapters, overhead

with tempfile.TemporaryDirectory() as work:
    adapter = make_adapters(model_name, Path(work), 1)[0]
    result = overhead(model_name, adapter, new_tokens=32, rounds=10)
for variant in ("unmerged", "merged"):
    entry = result[f"{variant}_vs_base"]
    rows.append((f"benchmark 2: {variant} vs base", f"{result['median_s'][variant]:.3f} s vs {result['median_s']['base']:.3f} s",
                 f"{entry['mean']:.3f}x (95 % CI {entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"))
p = probe()
rows.append(("precision probe", f"fp32 {p.fp32_gflops:.0f} / bf16 {p.bf16_gflops:.0f} GFLOP/s", f"-> {p.precision}"))

width = max(len(r[0]) for r in rows)
print(f"\nGPU check on {device} (torch {torch.__version__}, model {model_name})")
for what, measured, note in rows:
    print(f"  {what:<{width}}  {measured:<34}  {note}")
PY
