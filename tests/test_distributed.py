"""``medlora train`` under ``accelerate launch`` with 2 CPU processes (gloo): same adapter format as one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset
from medlora.training.trainer import train_adapter

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tensors(adapter_dir: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as handle:
        return {k: (tuple(handle.get_tensor(k).shape), str(handle.get_tensor(k).dtype)) for k in handle.keys()}  # noqa: SIM118 - safe_open is not iterable


@pytest.mark.distributed
@pytest.mark.skipif(os.environ.get("MEDLORA_TEST_DISTRIBUTED") != "1",
                    reason="launches 2 training processes (minutes on 2 shared cores): set MEDLORA_TEST_DISTRIBUTED=1")
def test_two_process_gloo_training_saves_the_single_process_format(tiny_llama_dir, qa_jsonl, tmp_path):
    overrides = {
        "models.llm.name": str(tiny_llama_dir), "data.specialty": str(tmp_path / "tiny.txt"),
        "data.sources": [str(qa_jsonl)], "training.epochs": 1, "training.batch_size": 4,
        "training.gradient_accumulation_steps": 1, "training.max_length": 48, "training.save_steps": 50,
        "training.threads": 1, "training.precision": "fp32"}
    (tmp_path / "tiny.txt").write_text("condition\n", encoding="utf-8")
    cfg = MedloraConfig().with_overrides(overrides)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump()), encoding="utf-8")
    data_dir = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data_dir)
    train_records = sum(1 for line in (data_dir / "train.jsonl").read_text().splitlines() if line.strip())

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MEDLORA_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
               "-m", "medlora.cli", "train", "--config", str(config_path), "--data-dir", str(data_dir),
               "--output-dir", str(tmp_path / "two")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    single = train_adapter(cfg, data_dir, tmp_path / "one")
    two, one = tmp_path / "two", tmp_path / "one"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    config_two, config_one = (json.loads((d / "adapter_config.json").read_text()) for d in (two, one))
    for config in (config_two, config_one):  # PEFT keeps target_modules as a set: its list order follows the
        config["target_modules"] = sorted(config["target_modules"])  # process's string hash seed
    assert config_two == config_one
    assert _tensors(two) == _tensors(one)
    # Two processes split each epoch: half the optimizer steps of the single process (batch 4 per process).
    two_result = json.loads((two / "training_log.json").read_text())["result"]
    assert single.steps_run == -(-train_records // 4)
    assert two_result["steps_run"] == -(-train_records // 8)
    assert not list(tmp_path.glob(".two.staging-*")), "a second process left a staging directory"
