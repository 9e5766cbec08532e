"""The per-machine precision probe: measured choice, cache, overrides, and the wiring into training/generation."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from medlora.models import precision as prec


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDLORA_PRECISION", raising=False)
    monkeypatch.setattr(prec, "_memo", {})
    monkeypatch.setattr(prec, "_process_choice", None)


def test_real_probe_picks_bf16_only_where_it_measured_faster():
    result = prec.run_probe(size=256, budget_s=0.05)
    assert result.device == "cpu" and result.fp32_gflops > 0 and result.bf16_gflops > 0
    assert result.precision == ("bf16" if result.bf16_gflops >= prec.BF16_MIN_SPEEDUP * result.fp32_gflops else "fp32")
    assert str(result.threads) in result.gflops_by_threads
    assert result.fp32_gflops == max(result.gflops_by_threads.values())


def _fake_rates(monkeypatch, fp32: float, bf16: float) -> list[tuple[int, torch.dtype]]:
    calls: list[tuple[int, torch.dtype]] = []

    def fake(size, dtype, device, **kwargs):
        calls.append((size, dtype))
        return bf16 if dtype == torch.bfloat16 else fp32

    monkeypatch.setattr(prec, "matmul_gflops", fake)
    return calls


def test_fast_bf16_is_chosen_and_slow_bf16_is_not_timed_at_full_size(monkeypatch):
    _fake_rates(monkeypatch, fp32=100.0, bf16=400.0)
    assert prec.run_probe(size=1024).precision == "bf16"
    calls = _fake_rates(monkeypatch, fp32=100.0, bf16=0.5)  # emulated bf16: hundreds of times slower
    assert prec.run_probe(size=1024).precision == "fp32"
    assert [size for size, dtype in calls if dtype == torch.bfloat16] == [256]
    _fake_rates(monkeypatch, fp32=100.0, bf16=110.0)  # faster, but not by enough to pay for the casts
    assert prec.run_probe(size=1024).precision == "fp32"


def test_probe_is_cached_per_machine(monkeypatch, tmp_path):
    _fake_rates(monkeypatch, fp32=50.0, bf16=1.0)
    first = prec.probe()
    files = list((tmp_path / "cache" / "probe").glob("precision-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["precision"] == "fp32"

    monkeypatch.setattr(prec, "_memo", {})
    monkeypatch.setattr(prec, "run_probe", lambda device=None: pytest.fail("the cached result was not used"))
    assert prec.probe() == first

    # Another machine (different key) measures again instead of trusting this one's numbers.
    monkeypatch.setattr(prec, "_memo", {})
    monkeypatch.setattr(prec, "machine_key", lambda device: "another-machine")
    measured = []
    monkeypatch.setattr(prec, "run_probe", lambda device=None: measured.append(1) or first)
    prec.probe()
    assert measured == [1]


def test_corrupt_cache_is_measured_again(monkeypatch, tmp_path, caplog):
    _fake_rates(monkeypatch, fp32=50.0, bf16=1.0)
    prec.probe()
    path = next((tmp_path / "cache" / "probe").glob("precision-*.json"))
    path.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(prec, "_memo", {})
    assert prec.probe().precision == "fp32"
    assert "unreadable precision probe cache" in caplog.text
    assert json.loads(path.read_text())["precision"] == "fp32"


def test_overrides_beat_the_probe(monkeypatch):
    monkeypatch.setattr(prec, "run_probe", lambda device=None: pytest.fail("an explicit choice must not probe"))
    assert prec.resolve_precision("bf16") == "bf16"
    monkeypatch.setenv("MEDLORA_PRECISION", "fp32")
    assert prec.resolve_precision("bf16") == "fp32"
    prec.set_process_precision("bf16")
    assert prec.resolve_precision("fp32") == "bf16"
    with pytest.raises(ValueError, match="--precision"):
        prec.set_process_precision("fp8")
    prec.set_process_precision(None)
    monkeypatch.setenv("MEDLORA_PRECISION", "half")
    with pytest.raises(ValueError, match="MEDLORA_PRECISION"):
        prec.resolve_precision()


def _linear_output_dtypes(model) -> tuple[list[torch.dtype], list]:
    seen: list[torch.dtype] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
               for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return seen, handles


@pytest.mark.parametrize("choice", ["bf16", "fp32"])
def test_training_runs_in_the_chosen_precision(choice, tiny_llama_dir, qa_jsonl, tmp_path, one_torch_thread,
                                               monkeypatch):
    from medlora.config import MedloraConfig
    from medlora.data.prepare import prepare_dataset
    from medlora.models.loading import load_base_model
    from medlora.training.trainer import train_adapter

    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "data.specialty": str(terms), "data.sources": [str(qa_jsonl)],
        "training.epochs": 1, "training.batch_size": 8, "training.max_length": 48, "training.max_train_samples": 8,
        "training.precision": choice, "training.threads": 1, "training.save_steps": 50})
    prepare_dataset(cfg.data, output_dir=tmp_path / "data")
    loaded = load_base_model(str(tiny_llama_dir))
    seen, handles = _linear_output_dtypes(loaded.model)
    result = train_adapter(cfg, tmp_path / "data", tmp_path / "adapter", loaded=loaded)
    for handle in handles:
        handle.remove()
    expected = torch.bfloat16 if choice == "bf16" else torch.float32
    assert result.precision == choice and result.threads == 1
    assert seen and seen[-1] == expected  # the last forward is the validation pass after training
    assert (torch.bfloat16 in seen) == (choice == "bf16")
    card = json.loads((tmp_path / "adapter" / "training_log.json").read_text())
    assert card["result"]["precision"] == choice


def test_generation_uses_bf16_autocast_only_when_chosen(tiny_llama_dir, one_torch_thread):
    from medlora.models.generation import generate_batch
    from medlora.models.loading import load_base_model

    loaded = load_base_model(str(tiny_llama_dir))
    for choice, expected in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        prec.set_process_precision(choice)
        seen, handles = _linear_output_dtypes(loaded.model)
        answers = generate_batch(loaded.model, loaded.tokenizer, loaded.spec, ["Question: psoriasis?"],
                                 max_new_tokens=3)
        for handle in handles:
            handle.remove()
        assert len(answers) == 1 and set(seen) == {expected}
        assert next(loaded.model.parameters()).dtype == torch.float32  # weights are never converted


def test_cli_rejects_an_unknown_precision():
    from medlora.cli import app

    result = CliRunner().invoke(app, ["--precision", "fp8", "train"])
    assert result.exit_code == 2 and "--precision" in result.output
