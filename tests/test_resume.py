"""Resume continues only its own run: a SIGKILLed run resumes to the same adapter; other data is refused.

Also the output-path guards of training: stale checkpoints never seed a fresh run, a retrain keeps the
previous adapter as ``.prev``, and a non-empty directory that is not an adapter is never replaced.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from helpers import pipeline_config

from medlora.data.prepare import prepare_dataset
from medlora.errors import MedloraError
from medlora.training.checkpoints import FINGERPRINT_FILE, complete_checkpoints
from medlora.training.trainer import checkpoint_dir_for, train_adapter

REPO = Path(__file__).resolve().parent.parent

TRAIN_SCRIPT = """
import json, sys
from medlora.config import MedloraConfig
from medlora.training.trainer import train_adapter
cfg = MedloraConfig.model_validate(json.loads(open(sys.argv[1]).read()))
train_adapter(cfg, sys.argv[2], sys.argv[3])
"""


def _cfg(tiny_llama_dir, qa_jsonl, tmp_path):
    # Closed-book rows only: grounded rows draw distractors from the machine's source index, which a
    # subprocess may build differently; the resume mechanics are the same either way.
    return pipeline_config(tiny_llama_dir, qa_jsonl, tmp_path).with_overrides({
        "training.save_steps": 1, "training.epochs": 2, "training.lora_dropout": 0.0,
        "training.grounded_fraction": 0.0})


def _lora(adapter_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(adapter_dir / "adapter_model.safetensors")


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, steps: int) -> None:
    from medlora.training import trainer

    original = trainer._StepCounter.on_step_end

    def on_step_end(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.steps >= steps:
            raise _Crash

    monkeypatch.setattr(trainer._StepCounter, "on_step_end", on_step_end)


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tiny_llama_dir, qa_jsonl, tmp_path):
    cfg = _cfg(tiny_llama_dir, qa_jsonl, tmp_path)
    data = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data)
    reference = train_adapter(cfg, data, tmp_path / "reference")
    total = reference.steps_run
    assert total >= 6

    seed = int(time.time())
    kill_at = random.Random(seed).randint(2, total - 2)
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.model_dump()))
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    adapter = tmp_path / "killed"
    checkpoints = checkpoint_dir_for(adapter)
    process = subprocess.Popen([sys.executable, str(script), str(config_file), str(data), str(adapter)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(int(p.name.split("-")[1]) >= kill_at for p in complete_checkpoints(checkpoints)):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "training did not reach the kill step"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not adapter.exists(), f"the run finished before it was killed (seed {seed})"

    resumed = train_adapter(cfg, data, adapter, resume=True)
    assert resumed.resumed_from is not None and resumed.steps_run < total, f"seed {seed}, kill at {kill_at}"
    want, got = _lora(tmp_path / "reference"), _lora(adapter)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.allclose(want[key], got[key], rtol=1e-3, atol=1e-5), (key, seed, kill_at)
    assert not checkpoints.exists(), "a successful save removes the run's checkpoints"


def test_resume_against_changed_data_or_recipe_is_refused(tiny_llama_dir, qa_jsonl, tmp_path, monkeypatch):
    cfg = _cfg(tiny_llama_dir, qa_jsonl, tmp_path)
    data = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data)
    adapter = tmp_path / "adapter"
    _crash_after(monkeypatch, 3)
    with pytest.raises(_Crash):
        train_adapter(cfg, data, adapter)
    monkeypatch.undo()
    checkpoints = checkpoint_dir_for(adapter)
    assert complete_checkpoints(checkpoints)

    with pytest.raises(MedloraError, match=r"refusing to resume.*training.learning_rate"):
        train_adapter(cfg.with_overrides({"training.learning_rate": 0.01}), data, adapter, resume=True)
    other = tmp_path / "other-data"
    prepare_dataset(cfg.with_overrides({"data.seed": 7}).data, output_dir=other)
    with pytest.raises(MedloraError, match=r"refusing to resume.*dataset_hash"):
        train_adapter(cfg, other, adapter, resume=True)
    # A checkpoint written without a fingerprint (an older run, another tool) is not trusted either.
    for path in checkpoints.rglob(FINGERPRINT_FILE):
        path.unlink()
    (checkpoints / "checkpoint-1" / FINGERPRINT_FILE).write_text("{}")
    with pytest.raises(MedloraError, match="refusing to resume"):
        train_adapter(cfg, data, adapter, resume=True)
    assert not adapter.exists()


def test_fresh_run_clears_stale_checkpoints_and_retrain_keeps_prev(tiny_llama_dir, qa_jsonl, tmp_path):
    cfg = _cfg(tiny_llama_dir, qa_jsonl, tmp_path).with_overrides({"training.epochs": 1})
    data = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data)
    adapter = tmp_path / "adapter"
    stale = checkpoint_dir_for(adapter) / "checkpoint-999"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    first = train_adapter(cfg, data, adapter)
    assert first.resumed_from is None and not stale.exists()
    first_weights = _lora(adapter)

    train_adapter(cfg.with_overrides({"training.seed": 3}), data, adapter)
    previous = adapter.with_name("adapter.prev")
    assert previous.is_dir() and (previous / "medlora.json").is_file()
    for key, value in _lora(previous).items():
        assert torch.equal(value, first_weights[key])

    precious = tmp_path / "models"
    precious.mkdir()
    (precious / "notes.txt").write_text("not an adapter")
    with pytest.raises(MedloraError, match="not empty"):
        train_adapter(cfg, data, precious)
    assert (precious / "notes.txt").read_text() == "not an adapter"
