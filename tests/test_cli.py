"""The command line: config errors as clean messages, the note's script names, flags overriding config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import make_pairs
from typer.testing import CliRunner

from medlora.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_train_script_accepts_the_original_note_flags():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "train_lora_adapter.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--epochs" in out and "--batch_size" in out and "--resume" in out
    for script in ("prepare_medical_dataset.py", "evaluate_adapter.py"):
        subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True, check=True)


def test_bad_config_is_one_clear_error_not_a_traceback(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("training:\n  epoch: 3\n")
    result = runner.invoke(app, ["prepare", "--config", str(bad)])
    assert result.exit_code == 2
    assert "training.epoch" in result.output and str(bad) in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_prepare_command_with_flags(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(p) for p in make_pairs(20)) + "\n")
    terms = tmp_path / "t.txt"
    terms.write_text("condition\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "--specialty", str(terms), "--source", str(pairs),
                                 "--output-dir", str(out), "--seed", "7"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["seed"] == 7 and sum(manifest["counts"].values()) == 20
