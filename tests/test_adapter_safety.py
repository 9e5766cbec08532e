"""Adapter files that must never reach the shared base: extra tensors, unsafe configs, corrupt or truncated files.

Each case is checked where adapters are loaded: the service (start-up scan and hot load), evaluation's
loader, merge, and push's offline validation.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from helpers import DERM_Q, make_adapter, service_config

from medlora.errors import MedloraError, ModelNotAvailableError
from medlora.adapters.checks import UnsafeAdapterError, check_adapter_files, load_lora
from medlora.service.llm_service import LLMService

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def good(tiny_llama_dir, tmp_path_factory) -> Path:
    return make_adapter(tiny_llama_dir, tmp_path_factory.mktemp("safety") / "lora-dermatology-adapter",
                        "dermatology", seed=1)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _with_lm_head(good: Path, dst: Path) -> Path:
    """The good adapter plus a full ``lm_head`` tensor: PEFT would copy it over the base model's output layer."""
    adapter = _copy(good, dst)
    tensors = load_file(adapter / WEIGHTS)
    some = next(t for k, t in tensors.items() if "lora_B" in k)
    vocab = 500
    tensors["base_model.model.lm_head.weight"] = torch.randn(vocab, some.shape[0])
    save_file(tensors, adapter / WEIGHTS)
    return adapter


def test_extra_tensors_are_refused_and_the_base_is_unchanged(tiny_llama_dir, good, tmp_path):
    bad = _with_lm_head(good, tmp_path / "lm-head-adapter")
    svc = LLMService(service_config(tiny_llama_dir, tmp_path / "none", **{"service.retrieval": False}))
    svc.load_model()
    before = svc.answer(DERM_Q, "base").body
    head = svc.loaded_model.model.lm_head.weight.detach().clone()
    with pytest.raises(UnsafeAdapterError, match="lm_head.weight"):
        svc.load_adapter("evil", bad)
    assert torch.equal(head, svc.loaded_model.model.lm_head.weight)
    assert svc.answer(DERM_Q, "base").body == before
    # The same check guards evaluation's loader and push.
    with pytest.raises(UnsafeAdapterError):
        load_lora(svc.loaded_model.model, bad)
    from medlora.service.hub import validate_for_push

    assert any("not LoRA A/B" in p for p in validate_for_push(bad))


def test_unsafe_configs_are_refused(good, tmp_path):
    cases = {"modules_to_save": ["lm_head"], "layer_replication": [[0, 2], [0, 2]], "init_lora_weights": "pissa",
             "use_dora": True, "target_modules": ["q_proj", "embed_tokens"], "peft_type": "PREFIX_TUNING"}
    for key, value in cases.items():
        adapter = _copy(good, tmp_path / f"cfg-{key}")
        config = json.loads((adapter / "adapter_config.json").read_text())
        config[key] = value
        (adapter / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(UnsafeAdapterError, match=key if key != "peft_type" else "peft_type"):
            check_adapter_files(adapter)


def test_modules_to_save_adapter_from_peft_is_refused(tiny_llama_dir, tmp_path):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"],
                                                  task_type=TaskType.CAUSAL_LM))
    peft_model.save_pretrained(tmp_path / "mts", safe_serialization=True)
    config = json.loads((tmp_path / "mts" / "adapter_config.json").read_text())
    config["modules_to_save"] = None  # hide it in the config: the tensors alone must still be refused
    (tmp_path / "mts" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeAdapterError, match="not LoRA A/B"):
        check_adapter_files(tmp_path / "mts")


def test_bad_adapters_are_skipped_at_start_up_and_refused_on_hot_load(tiny_llama_dir, good, tmp_path, caplog):
    scan = tmp_path / "models"
    _copy(good, scan / "lora-dermatology-adapter")
    truncated = _copy(good, scan / "lora-truncated-adapter")
    data = (truncated / WEIGHTS).read_bytes()
    (truncated / WEIGHTS).write_bytes(data[: len(data) // 2])
    corrupt_meta = _copy(good, scan / "lora-corruptmeta-adapter")
    (corrupt_meta / "medlora.json").write_text("{not json")
    latin = _copy(good, scan / "lora-latin-adapter")
    (latin / "adapter_config.json").write_bytes(
        (latin / "adapter_config.json").read_bytes().replace(b'"LORA"', b'"LORA\xe9"'))
    _with_lm_head(good, scan / "lora-lmhead-adapter")

    svc = LLMService(service_config(tiny_llama_dir, scan, **{"service.retrieval": False}))
    with caplog.at_level(logging.WARNING):
        svc.load_model()  # must not raise
    assert [a.name for a in svc.list_adapters()] == ["dermatology"]
    for name, reason in (("lora-truncated-adapter", "truncated"), ("lora-corruptmeta-adapter", "not valid JSON"),
                         ("lora-latin-adapter", "not UTF-8"), ("lora-lmhead-adapter", "not LoRA")):
        assert any(name in r.getMessage() and reason in r.getMessage() for r in caplog.records), (name, caplog.text)
    assert svc.answer(DERM_Q, "dermatology").body
    for bad in ("lora-truncated-adapter", "lora-corruptmeta-adapter", "lora-latin-adapter"):
        with pytest.raises(MedloraError):
            svc.load_adapter("hot", scan / bad)


def test_base_model_loads_safetensors_only(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from medlora.models.loading import load_base_model

    pickled = tmp_path / "pickled-model"
    shutil.copytree(tiny_llama_dir, pickled)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ModelNotAvailableError, match="safetensors"):
        load_base_model(str(pickled))
