"""Self-distillation replay (medlora.training.replay): prompts, sampled base answers, and their rows in training."""

from __future__ import annotations

import json

import pytest
import torch

from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset
from medlora.models.generation import decoding_kwargs
from medlora.models.loading import load_base_model
from medlora.training.replay import REPLAY_SOURCE, replay_prompts, replay_records
from medlora.training.trainer import train_adapter


@pytest.fixture(scope="module")
def tiny_loaded(tiny_llama_dir):
    return load_base_model(str(tiny_llama_dir))


def test_shipped_prompts_are_parsed_without_comments():
    prompts = replay_prompts()
    assert len(prompts) >= 40
    assert not any(p.startswith("#") or not p.strip() for p in prompts)
    assert any(p.endswith("Answer yes or no.") for p in prompts)  # yes/no judgements are replayed too
    assert any(not p.endswith("Answer yes or no.") for p in prompts)


def test_custom_prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# a comment\n\nFirst question?\n  Second question?  \n", encoding="utf-8")
    assert replay_prompts(path) == ["First question?", "Second question?"]


def test_sampled_decoding_is_requested_explicitly(tiny_tokenizer):
    assert decoding_kwargs(tiny_tokenizer, 4, 8)["do_sample"] is False
    sampled = decoding_kwargs(tiny_tokenizer, 4, 8, sampled=True)
    assert sampled["do_sample"] is True and sampled["temperature"] == 1.0 and sampled["top_k"] == 0


def test_replay_records_are_seeded_samples_of_the_base(tiny_loaded, one_torch_thread):
    prompts = ["What is a rash?", "Is skin an organ? Answer yes or no.", "Define a symptom."]
    torch.manual_seed(123)
    outside = torch.random.get_rng_state()
    first = replay_records(tiny_loaded, 7, seed=3, max_new_tokens=24, prompts=prompts)
    # The caller's random stream is left as it was: the LoRA initialisation after it must not depend on replay.
    assert torch.equal(torch.random.get_rng_state(), outside)
    again = replay_records(tiny_loaded, 7, seed=3, max_new_tokens=24, prompts=prompts)
    other = replay_records(tiny_loaded, 7, seed=4, max_new_tokens=24, prompts=prompts)
    assert [(r.question, r.answer) for r in first] == [(r.question, r.answer) for r in again]
    assert [r.answer for r in first] != [r.answer for r in other]
    assert all(r.question in prompts and r.answer and r.source == REPLAY_SOURCE for r in first)
    assert len(first) <= 7
    # Samples, not the greedy answer: the same prompt asked twice gets different answers.
    by_prompt: dict[str, set[str]] = {}
    for r in replay_records(tiny_loaded, 30, seed=5, max_new_tokens=24, prompts=prompts):
        by_prompt.setdefault(r.question, set()).add(r.answer)
    assert any(len(answers) > 1 for answers in by_prompt.values())


def test_cut_samples_are_dropped(tiny_loaded, one_torch_thread):
    """A sample that ran into max_new_tokens would teach the model to stop where it did not choose to."""
    kept = replay_records(tiny_loaded, 12, seed=0, max_new_tokens=24, prompts=["Describe a symptom."])
    assert all(len(tiny_loaded.tokenizer(r.answer, add_special_tokens=False)["input_ids"]) < 30 for r in kept)
    assert replay_records(tiny_loaded, 12, seed=0, max_new_tokens=1, prompts=["Describe a symptom."]) == []
    assert replay_records(tiny_loaded, 0, seed=0, max_new_tokens=24) == []


def test_training_adds_the_replay_rows(tiny_llama_dir, qa_jsonl, tmp_path, one_torch_thread):
    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "data.specialty": str(terms), "data.sources": [str(qa_jsonl)],
        "training.epochs": 1, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
        "training.max_length": 64, "training.save_steps": 50, "training.grounded_fraction": 0.0,
        "training.replay_max_new_tokens": 24,
    })
    data_dir = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data_dir)
    plain = train_adapter(cfg, data_dir, tmp_path / "plain")
    replayed = train_adapter(cfg.with_overrides({"training.replay_examples": 40}), data_dir, tmp_path / "replay")
    assert replayed.train_tokens > plain.train_tokens
    card = json.loads((tmp_path / "replay" / "medlora.json").read_text())
    assert card["hyperparameters"]["replay_examples"] == 40
