"""Which precision and thread count this machine runs fastest, measured once and cached per machine.

Why measure instead of reading CPU flags: on a CPU with AMX/AVX-512-BF16 a bf16 matmul runs ~4× the fp32
rate, while on an AVX2-only CPU the same bf16 matmul is emulated and runs hundreds of times *slower*. Flags
hint at that, but only a timing tells (and a GPU without fast bf16 looks similar). The probe:

1. times a square fp32 matmul with 1 thread and with every core this process may use (the best is the
   machine's fp32 peak, also reported by the benchmark);
2. times one *small* bf16 matmul first, so an emulated bf16 costs milliseconds, not minutes, and only when it
   is not hopeless times the full-size one;
3. picks bf16 only when it is at least ``BF16_MIN_SPEEDUP`` faster than fp32.

The result is written as JSON under the medlora cache, keyed by CPU model, core count, GPU name and torch
version, so a later run on the same machine reads it in a millisecond. ``--precision fp32|bf16`` (or the
``MEDLORA_PRECISION`` environment variable) overrides it; ``python -m medlora.models.precision --refresh``
measures again (for instance after the machine was busy during the first probe).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "bf16")
BF16_MIN_SPEEDUP = 1.2  # below this, autocast's casts and the precision loss are not worth it
PROBE_VERSION = 1
_ENV = "MEDLORA_PRECISION"
_process_choice: str | None = None  # set by --precision on the CLI
_memo: dict[str, ProbeResult] = {}  # device|cache dir -> result, read once per process


@dataclass(frozen=True)
class ProbeResult:
    """What the probe measured on this machine; ``precision`` and ``threads`` are its choices."""

    device: str
    fp32_gflops: float  # best fp32 matmul rate over the thread counts tried
    bf16_gflops: float
    threads: int  # thread count of the best fp32 rate (CPU; 0 on CUDA)
    gflops_by_threads: dict[str, float]
    precision: Precision
    matmul_size: int
    seconds: float
    machine_key: str
    version: int = PROBE_VERSION

    @property
    def bf16_speedup(self) -> float:
        return self.bf16_gflops / max(self.fp32_gflops, 1e-9)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device) -> str:
    """Identifies the hardware + torch build whose speed the probe measured."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    raw = "|".join([_cpu_model(), str(usable_cores()), gpu, torch.__version__, str(PROBE_VERSION)])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _cache_path(device: torch.device, cache_dir: Path | None) -> Path:
    from medlora.models.embedded import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "probe" / f"precision-{machine_key(device)}.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(size: int, dtype: torch.dtype, device: torch.device, *, budget_s: float = 0.3,
                  max_repeats: int = 50) -> float:
    """GFLOP/s of a ``size``² matmul: repeated until ``budget_s`` has passed (at least once after a warm-up)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    _sync(device)
    repeats, started = 0, time.perf_counter()
    while repeats < max_repeats:
        torch.mm(a, b)
        repeats += 1
        if time.perf_counter() - started >= budget_s:
            break
    _sync(device)
    seconds = time.perf_counter() - started
    return 2 * size**3 * repeats / seconds / 1e9


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_probe(device: torch.device | None = None, *, size: int = 1024, budget_s: float = 0.3) -> ProbeResult:
    """Measure fp32 (per thread count) and bf16 matmul rates; about 1-2 s on a CPU."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    by_threads: dict[str, float] = {}
    if device.type == "cpu":
        for count in sorted({1, usable_cores()}):
            with torch_threads(count):
                by_threads[str(count)] = matmul_gflops(size, torch.float32, device, budget_s=budget_s)
        threads = int(max(by_threads, key=lambda k: by_threads[k]))
        fp32 = by_threads[str(threads)]
    else:
        threads, fp32 = 0, matmul_gflops(size * 4, torch.float32, device, budget_s=budget_s)
    with torch_threads(threads) if threads else contextlib.nullcontext():
        # A small matmul first: emulated bf16 runs hundreds of times slower and must not stall the probe.
        small = matmul_gflops(min(size, 256), torch.bfloat16, device, budget_s=budget_s / 3, max_repeats=3)
        if small * 4 >= fp32:  # not hopeless: measure at the full size (small matmuls under-use any unit)
            bf16 = matmul_gflops(size if device.type == "cpu" else size * 4, torch.bfloat16, device, budget_s=budget_s)
        else:
            bf16 = small
    precision: Precision = "bf16" if bf16 >= BF16_MIN_SPEEDUP * fp32 else "fp32"
    return ProbeResult(device=device.type, fp32_gflops=round(fp32, 2), bf16_gflops=round(bf16, 3), threads=threads,
                       gflops_by_threads={k: round(v, 2) for k, v in by_threads.items()}, precision=precision,
                       matmul_size=size, seconds=round(time.perf_counter() - started, 3),
                       machine_key=machine_key(device))


def probe(device: torch.device | None = None, *, cache_dir: Path | None = None, refresh: bool = False) -> ProbeResult:
    """The cached probe result for this machine, measuring (and caching) it when missing or stale."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memo_key = f"{device}|{cache_dir}"
    if not refresh and memo_key in _memo:
        return _memo[memo_key]  # generation asks on every batch: no file read each time
    path = _cache_path(device, cache_dir)
    if not refresh and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == PROBE_VERSION and data.get("machine_key") == machine_key(device):
                _memo[memo_key] = ProbeResult(**data)
                return _memo[memo_key]
        except (OSError, ValueError, TypeError):
            log.warning("%s: unreadable precision probe cache, measuring again", path)
    result = _memo[memo_key] = run_probe(device)
    log.info("precision probe: fp32 %.1f GFLOP/s (%d threads), bf16 %.2f GFLOP/s -> %s", result.fp32_gflops,
             result.threads, result.bf16_gflops, result.precision)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    except OSError as err:
        log.warning("could not cache the precision probe in %s: %s", path, err)
    return result


def set_process_precision(choice: str | None) -> None:
    """``--precision`` on the CLI: applies to everything this process trains or generates."""
    global _process_choice
    if choice is not None and choice not in PRECISION_CHOICES:
        raise ValueError(f"--precision: unknown value {choice!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    _process_choice = choice


def requested_precision(configured: str = "auto") -> str:
    """The precision asked for: ``--precision`` beats ``$MEDLORA_PRECISION`` beats the config."""
    choice = _process_choice or os.environ.get(_ENV) or configured
    if choice not in PRECISION_CHOICES:
        raise ValueError(f"{_ENV}: unknown value {choice!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    return choice


def resolve_precision(configured: str = "auto", device: torch.device | None = None,
                      cache_dir: Path | None = None) -> Precision:
    """``fp32`` or ``bf16`` for this process: an explicit choice, else the cached probe's."""
    choice = requested_precision(configured)
    if choice != "auto":
        return choice  # type: ignore[return-value]
    return probe(device, cache_dir=cache_dir).precision


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on ``device`` (weights stay fp32; matmuls run in bf16), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def main(argv: list[str] | None = None) -> None:
    """``python -m medlora.models.precision [--refresh]``: print (and cache) this machine's probe."""
    import argparse

    parser = argparse.ArgumentParser(description="Measure and cache this machine's fastest precision.")
    parser.add_argument("--refresh", action="store_true", help="measure again even when a cached result exists")
    args = parser.parse_args(argv)
    print(json.dumps(asdict(probe(refresh=args.refresh)), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
