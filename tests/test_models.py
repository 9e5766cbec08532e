"""Base-model resolution, architecture facts and quantization fallbacks."""

from __future__ import annotations

import logging

import pytest
from transformers import AutoConfig

from medlora.config import QuantizationConfig
from medlora.errors import ModelNotAvailableError
from medlora.models.architecture import describe_model
from medlora.models.loading import load_base_model
from medlora.models.quantization import quantization_kwargs
from medlora.models.resolve import resolve_model


def test_t5_and_llama_get_their_own_targets_and_task_types(tiny_llama_dir, tiny_t5_dir):
    t5 = describe_model(AutoConfig.from_pretrained(tiny_t5_dir))
    llama = describe_model(AutoConfig.from_pretrained(tiny_llama_dir))
    assert t5.is_encoder_decoder and t5.target_modules == ("q", "v") and t5.task_type.value == "SEQ_2_SEQ_LM"
    assert not llama.is_encoder_decoder and llama.target_modules == ("q_proj", "v_proj")
    assert llama.task_type.value == "CAUSAL_LM"
    assert describe_model(AutoConfig.from_pretrained(tiny_llama_dir), ["k_proj"]).target_modules == ("k_proj",)


def test_local_directory_and_bad_names(tmp_path, tiny_llama_dir):
    assert resolve_model(str(tiny_llama_dir)).kind == "local"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="config.json"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelNotAvailableError, match="neither"):
        resolve_model("not a model")
    with pytest.raises(ModelNotAvailableError, match="unknown embedded model"):
        resolve_model("embedded:gpt-17")


def test_unreachable_hub_id_says_how_to_use_a_local_directory(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as err:
        load_base_model("google/flan-t5-xl")
    message = str(err.value)
    assert "google/flan-t5-xl" in message and "local" in message and "models.llm.name" in message


def test_k_bit_request_without_cuda_warns_once_and_loads_full_precision(caplog, tiny_llama_dir):
    with caplog.at_level(logging.WARNING, logger="medlora"):
        assert quantization_kwargs(QuantizationConfig(load_in_8bit=True)) == {}
        loaded = load_base_model(str(tiny_llama_dir), quantization=QuantizationConfig(load_in_4bit=True))
    warnings = [r for r in caplog.records if "full precision" in r.getMessage()]
    assert len(warnings) == 2  # one per request
    assert next(loaded.model.parameters()).dtype.is_floating_point
