"""Benchmark 6: ``medlora serve`` from launch to a ready ``/health``, first run (empty cache: GGUF conversion,
source index) vs a warm start (everything cached), each in a fresh process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_to_health(cache: Path, adapters_dir: Path, model: str, *, timeout_s: float = 300) -> float:
    """Seconds from ``medlora serve`` starting until ``GET /health`` answers 200."""
    port = _free_port()
    env = {**os.environ, "MEDLORA_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    # The bench's adapters are the ones in adapters_dir: config.yaml's own adapter_path may not exist here.
    cache.parent.mkdir(parents=True, exist_ok=True)
    config = cache.parent / "serve.yaml"
    config.write_text("models:\n  llm:\n    use_medical_adapter: false\n", encoding="utf-8")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "medlora.cli", "serve", "--config", str(config), "--port", str(port),
         "--adapters-dir", str(adapters_dir), "--model", model],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"medlora serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"/health not ready after {timeout_s} s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def run(work: Path, adapters_dir: Path, model: str, *, warm_repeats: int = 2) -> dict[str, Any]:
    cache = work / "cold-cache"
    cold = time_to_health(cache, adapters_dir, model)
    warm = [time_to_health(cache, adapters_dir, model) for _ in range(warm_repeats)]
    best = min(warm)
    return {"cold_s": round(cold, 2), "warm_s": [round(w, 2) for w in warm], "warm_best_s": round(best, 2),
            "warm_vs_cold": round(best / cold, 3), "adapters": len([p for p in adapters_dir.iterdir() if p.is_dir()])}
