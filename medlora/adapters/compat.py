"""Will vLLM (``--enable-lora``) and LoRAX load a saved adapter as it is? Checked from its files, offline.

vLLM's LoRA loader (``vllm/lora/peft_helper.py`` and the model's ``packed_modules_mapping``) refuses an adapter
that has ``modules_to_save`` (a trained copy of a whole layer), DoRA, a bias, a rank above ``--max-lora-rank``
(default 16, at most 512), or LoRA on a module the architecture's LoRA kernels do not cover. LoRAX reads
the same PEFT layout with the same module names. Knowing this before a GPU server refuses to start is
cheaper than learning it there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Ranks vLLM accepts for --max-lora-rank, and its default.
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16

_LLAMA_LIKE = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
# Module names vLLM can put LoRA on, per model_type (its packed qkv/gate_up layers take the unpacked names).
VLLM_LORA_MODULES: dict[str, frozenset[str]] = {
    **{t: _LLAMA_LIKE for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                                "granite", "olmo2", "phi3_small")},
    "phi3": frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    "gpt_neox": frozenset({"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}),
    "falcon": frozenset({"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}),
    "gpt2": frozenset({"c_attn", "c_proj", "c_fc"}),
    "phi": frozenset({"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"}),
}


@dataclass
class CompatReport:
    """``problems`` stop vLLM from loading the adapter; ``notes`` are flags the server must be started with."""

    adapter_dir: Path
    model_type: str
    rank: int
    target_modules: list[str]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def required_max_lora_rank(self) -> int:
        """The smallest ``--max-lora-rank`` value vLLM accepts that fits this adapter."""
        return next((r for r in VLLM_MAX_LORA_RANKS if r >= self.rank), VLLM_MAX_LORA_RANKS[-1])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def check_vllm(adapter_dir: str | Path, model_type: str | None = None) -> CompatReport:
    """Check one saved adapter directory against vLLM's LoRA constraints.

    ``model_type`` defaults to the one ``medlora train`` records in ``medlora.json``.
    """
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    config = _read_json(config_path)
    if not config:
        raise ValueError(f"{config_path}: missing; is {adapter_dir} a PEFT adapter directory?")
    model_type = model_type or _read_json(adapter_dir / "medlora.json").get("base_model", {}).get("model_type", "")
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else sorted(targets)
    rank = int(config.get("r", 0))
    report = CompatReport(adapter_dir, model_type, rank, targets)
    problems = report.problems
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"adapter_config.json peft_type: {config.get('peft_type')} (vLLM serves LoRA only)")
    if config.get("modules_to_save"):
        problems.append(f"adapter_config.json modules_to_save: {config['modules_to_save']} (vLLM supports none: "
                        "train without modules_to_save)")
    if config.get("use_dora"):
        problems.append("adapter_config.json use_dora: true (vLLM does not support DoRA)")
    if config.get("bias", "none") != "none":
        problems.append(f"adapter_config.json bias: {config['bias']!r} (vLLM needs bias 'none')")
    if rank < 1 or rank > VLLM_MAX_LORA_RANKS[-1]:
        problems.append(f"adapter_config.json r: {rank} (vLLM accepts ranks 1-{VLLM_MAX_LORA_RANKS[-1]})")
    elif rank > VLLM_DEFAULT_MAX_LORA_RANK:
        report.notes.append(f"rank {rank} > vLLM's default 16: start vLLM with --max-lora-rank "
                            f"{report.required_max_lora_rank()}")
    supported = VLLM_LORA_MODULES.get(model_type)
    if supported is None:
        problems.append(f"base model type {model_type or '(unknown)'!r}: vLLM has no LoRA support for it here "
                        f"(known: {', '.join(sorted(VLLM_LORA_MODULES))})")
    elif targets == ["all-linear"]:
        report.notes.append("target_modules 'all-linear' is resolved by PEFT at load time; vLLM needs the names")
        problems.append("adapter_config.json target_modules: 'all-linear' (save the resolved module names)")
    else:
        unsupported = [t for t in targets if t.rsplit(".", 1)[-1] not in supported]
        if unsupported:
            problems.append(f"adapter_config.json target_modules: {unsupported} not LoRA-capable in vLLM for "
                            f"{model_type} (supported: {', '.join(sorted(supported))})")
    if not (adapter_dir / "adapter_model.safetensors").is_file() and not (adapter_dir / "adapter_model.bin").is_file():
        problems.append(f"{adapter_dir}: no adapter_model.safetensors")
    return report


def vllm_serve_command(base_model: str, adapters: dict[str, Path]) -> list[str]:
    """The ``vllm serve`` argv that loads ``adapters`` (name -> directory) on ``base_model``."""
    reports = [check_vllm(path) for path in adapters.values()]
    max_rank = max((r.required_max_lora_rank() for r in reports), default=VLLM_DEFAULT_MAX_LORA_RANK)
    argv = ["vllm", "serve", base_model, "--enable-lora", "--max-loras", str(max(len(adapters), 1)),
            "--max-lora-rank", str(max(max_rank, VLLM_DEFAULT_MAX_LORA_RANK)), "--lora-modules"]
    return argv + [f"{name}={path}" for name, path in adapters.items()]


def main(argv: list[str] | None = None) -> int:
    """``python -m medlora.adapters.compat DIR...``: print each adapter's verdict; exit 1 when any fails."""
    import argparse

    parser = argparse.ArgumentParser(description="Check saved adapters against vLLM's LoRA constraints.")
    parser.add_argument("adapter_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = False
    for path in args.adapter_dirs:
        report = check_vllm(path)
        verdict = "ok" if report.ok else "NOT loadable"
        print(f"{path}: {verdict} for vLLM (r {report.rank}, {report.model_type}, {', '.join(report.target_modules)})")
        for line in report.problems + report.notes:
            print(f"  - {line}")
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
