from pathlib import Path

import pytest

from medlora.config import MedloraConfig, load_config
from medlora.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_original_note_recipe():
    t = MedloraConfig().training
    assert (t.lora_r, t.lora_alpha, t.lora_dropout) == (8, 32, 0.1)
    assert (t.epochs, t.batch_size, t.gradient_accumulation_steps) == (3, 2, 4)
    assert (t.learning_rate, t.warmup_ratio, t.max_grad_norm) == (3e-4, 0.03, 0.3)


def test_repository_config_yaml_is_valid_and_in_the_note_shape():
    cfg = load_config(REPO / "config.yaml")
    assert cfg.models.llm.use_medical_adapter is True
    assert cfg.models.llm.adapter_path == "data/models/lora-dermatology-adapter"
    assert cfg.models.llm.quantization.load_in_8bit is False


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  llm:\n    quantisation: {load_in_8bit: true}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "models.llm.quantisation" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("training:\n  epochs: three\n")
    with pytest.raises(ConfigError, match="training.epochs"):
        load_config(path)


def test_both_quantization_modes_is_an_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  llm:\n    quantization: {load_in_8bit: true, load_in_4bit: true}\n")
    with pytest.raises(ConfigError, match="load_in_4bit"):
        load_config(path)


def test_overrides_beat_the_file_and_none_is_ignored():
    cfg = load_config(REPO / "config.yaml").with_overrides({"training.epochs": 1, "training.batch_size": None})
    assert cfg.training.epochs == 1 and cfg.training.batch_size == 2
    with pytest.raises(ConfigError, match="training.epocs"):
        cfg.with_overrides({"training.epocs": 1})


def test_demo_preset_layers_over_the_file():
    cfg = load_config(REPO / "config.yaml", preset="demo")
    assert cfg.training.epochs == 1 and cfg.training.max_train_samples
    assert cfg.training.warmup_ratio == 0.03 and cfg.training.max_grad_norm == 0.3  # untouched keys keep their values
