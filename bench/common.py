"""Shared helpers of the benchmarks: paired timing with 95 % intervals, RSS, the machine description, and the
prepared data a benchmark reads."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import torch

from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset


def ensure_prepared(cfg: MedloraConfig, specialty: str) -> Path:
    """``specialty``'s prepared data directory under ``cfg``, prepared with medlora's prepare if missing."""
    out = Path(cfg.data.output_dir.format(specialty=specialty))
    if not (out / "manifest.json").is_file():
        prepare_dataset(cfg.with_overrides({"data.specialty": specialty}).data, output_dir=out)
    return out


def bootstrap_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """The mean of ``values`` and its 95 % percentile-bootstrap interval (seeded; zeros for no values)."""
    if not values:
        return {"mean": 0.0, "low": 0.0, "high": 0.0}
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return {"mean": sum(values) / n, "low": means[int(0.025 * resamples)], "high": means[int(0.975 * resamples)]}


def wall(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(wall(fn) for _ in range(repeats))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided ``confidence`` interval of the mean (Student's t; needs 2+ values)."""
    from scipy.stats import t

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_ratios(variants: dict[str, Callable[[], Any]], baseline: str, rounds: int) -> dict[str, Any]:
    """Time every variant once per round, rotating their order, and give each variant's time ratio to the
    baseline *within the same round* with a 95 % interval.

    Pairing within rounds cancels the slow drift of a shared machine (another job starting or stopping)
    that would otherwise dominate a difference of a few per cent.
    """
    names = list(variants)
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(rounds):
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        for name in order:
            times[name].append(wall(variants[name]))
    result: dict[str, Any] = {"rounds": rounds, "seconds": {n: [round(t, 4) for t in ts] for n, ts in times.items()}}
    for name in names:
        if name == baseline:
            continue
        ratios = [a / b for a, b in zip(times[name], times[baseline], strict=True)]
        mean, low, high = t_interval(ratios)
        result[f"{name}_vs_{baseline}"] = {"mean": mean, "ci95": [low, high]}
    result["median_s"] = {n: statistics.median(ts) for n, ts in times.items()}
    return result


def _malloc_trim() -> None:
    """Hand glibc's free heap pages back to the system (Linux/glibc only; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_mb() -> float:
    """Process RSS in MiB after a garbage collection and a malloc_trim.

    Trimming first makes two readings differ by the memory actually held between them, not by whatever the
    allocator happened to keep or reuse from freed buffers.
    """
    gc.collect()
    _malloc_trim()
    return psutil.Process().memory_info().rss / 2**20


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
