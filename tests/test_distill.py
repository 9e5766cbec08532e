"""Distillation replay (medlora.training.distill): prompts, the KL to the base, and its place in training."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset
from medlora.errors import ConfigError
from medlora.models.loading import load_base_model
from medlora.models.prompts import reading_question
from medlora.training.distill import (
    DistillationReplay,
    ReplayRow,
    kl_to_teacher,
    replay_prompts,
    replay_rows,
)
from medlora.training.trainer import train_adapter


@pytest.fixture(scope="module")
def tiny_loaded(tiny_llama_dir):
    return load_base_model(str(tiny_llama_dir))


def test_shipped_prompts_hold_general_questions_and_reading_questions():
    prompts = replay_prompts()
    assert len(prompts) >= 90 and len(set(prompts)) == len(prompts)
    reading = [p for p in prompts if p.startswith("Abstract: ")]
    assert len(reading) >= 40 and len(reading) % 2 == 0  # each abstract asked about two topics
    assert any(not p.startswith("Abstract: ") for p in prompts)
    # One format with the outside-the-specialty reading check.
    assert reading[0] == reading_question(reading[0].split("\n\n")[0].removeprefix("Abstract: "),
                                          reading[0].split("about ", 1)[1].split("?")[0])


def test_a_broken_prompt_file_is_named_with_its_entry(tmp_path):
    path = tmp_path / "replay.yaml"
    path.write_text("general: ['What is a cell?']\nabstracts:\n  - text: A study.\n    about: lungs\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"replay\.yaml: abstracts entry 1 lacks not_about"):
        replay_prompts(path)
    path.write_text("general: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="replay.yaml: not valid YAML"):
        replay_prompts(path)
    path.write_text("general: ['What is a cell?', '  ']\n", encoding="utf-8")
    assert replay_prompts(path) == ["What is a cell?"]


def test_kl_is_zero_for_equal_distributions_and_reads_only_masked_positions():
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 11)
    assert kl_to_teacher(teacher, teacher, torch.ones(2, 5)).item() == pytest.approx(0.0, abs=1e-6)
    student = teacher.clone()
    student[1, 4] += torch.randn(11) * 3
    masked_out = torch.ones(2, 5)
    masked_out[1, 4] = 0
    assert kl_to_teacher(student, teacher, masked_out).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_teacher(student, teacher, torch.ones(2, 5)).item() > 0.01


def test_the_mask_starts_where_the_first_answer_token_is_predicted():
    replay = DistillationReplay([ReplayRow([5, 6, 7], [8, 9]), ReplayRow([5, 6], [])], weight=1.0,
                                rows_per_step=2, seed=0, pad_id=0, is_encoder_decoder=False)
    inputs, mask = replay.batch(replay.rows, torch.device("cpu"))
    assert inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]


def test_draws_cycle_through_every_row_in_a_seeded_order():
    rows = [ReplayRow([i], [i]) for i in range(5)]

    def draws(seed: int) -> list[int]:
        replay = DistillationReplay(rows, weight=1.0, rows_per_step=2, seed=seed, pad_id=0, is_encoder_decoder=False)
        return [r.prompt_ids[0] for _ in range(5) for r in replay._draw()]

    first = draws(0)
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:]) == list(range(5))
    assert first == draws(0) and first != draws(1)


@pytest.mark.parametrize("family", ["llama", "t5"])
def test_loss_is_zero_for_a_fresh_adapter_and_trains_only_the_adapter(family, tiny_llama_dir, tiny_t5_dir,
                                                                      one_torch_thread):
    loaded = load_base_model(str(tiny_llama_dir if family == "llama" else tiny_t5_dir))
    rows = replay_rows(loaded, ["What is a rash?", "Is skin an organ? Answer yes or no."], continuation_tokens=6)
    assert all(r.prompt_ids for r in rows) and all(len(r.continuation_ids) <= 6 for r in rows)
    targets = ["q_proj", "v_proj"] if family == "llama" else ["q", "v"]
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=targets, lora_dropout=0.0))
    replay = DistillationReplay(rows, weight=1.0, rows_per_step=2, seed=0, pad_id=loaded.tokenizer.pad_token_id,
                                is_encoder_decoder=loaded.spec.is_encoder_decoder)
    # LoRA's B starts at zero: the adapter is the base, so there is nothing to pull back.
    assert replay.loss(model).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    loss = replay.loss(model)
    assert loss.item() > 1e-4
    replay._queue = []  # the same draw again, every logit projected
    replay._rng.seed(0)
    assert replay.loss(model, only_matched_logits=False).item() == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)


def _kl_on_replay(adapter_dir, base_dir, prompts) -> float:
    from peft import PeftModel

    loaded = load_base_model(str(base_dir))
    rows = replay_rows(loaded, prompts, continuation_tokens=8)
    model = PeftModel.from_pretrained(loaded.model, str(adapter_dir))
    replay = DistillationReplay(rows, weight=1.0, rows_per_step=len(rows), seed=0,
                                pad_id=loaded.tokenizer.pad_token_id, is_encoder_decoder=False)
    with torch.no_grad():
        return replay.loss(model).item()


def test_training_with_replay_stays_closer_to_the_base(tiny_llama_dir, qa_jsonl, tmp_path, one_torch_thread):
    prompts = ["What is a rash?", "Is skin an organ? Answer yes or no.", "Describe a symptom.",
               "What does the liver do?"]
    replay_file = tmp_path / "replay.yaml"
    replay_file.write_text(json.dumps({"general": prompts}), encoding="utf-8")
    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "data.specialty": str(terms), "data.sources": [str(qa_jsonl)],
        "training.epochs": 2, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
        "training.max_length": 64, "training.save_steps": 50, "training.grounded_fraction": 0.0,
        "training.learning_rate": 5e-3, "training.logging_steps": 2, "training.lora_targets": "all-linear",
        "training.replay_prompts": str(replay_file), "training.replay_tokens": 8,
    })
    data_dir = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data_dir)
    train_adapter(cfg, data_dir, tmp_path / "plain")
    replayed = cfg.with_overrides({"training.replay_kl_weight": 20.0, "training.replay_rows": 2})
    train_adapter(replayed, data_dir, tmp_path / "replay")
    plain_kl = _kl_on_replay(tmp_path / "plain", tiny_llama_dir, prompts)
    replay_kl = _kl_on_replay(tmp_path / "replay", tiny_llama_dir, prompts)
    assert plain_kl > 0 and replay_kl < 0.5 * plain_kl
    card = json.loads((tmp_path / "replay" / "medlora.json").read_text())
    assert card["hyperparameters"]["replay_kl_weight"] == 20.0
    logged = json.loads((tmp_path / "replay" / "training_log.json").read_text())["log_history"]
    assert any("replay_kl" in entry for entry in logged)
    assert not any("replay_kl" in entry for entry in json.loads(
        (tmp_path / "plain" / "training_log.json").read_text())["log_history"])


def test_zero_continuation_tokens_match_the_first_answer_token_alone(tiny_loaded, one_torch_thread):
    rows = replay_rows(tiny_loaded, ["Is skin an organ? Answer yes or no.", "What is a rash?"], continuation_tokens=0)
    assert [r.continuation_ids for r in rows] == [[], []]
    replay = DistillationReplay(rows, weight=1.0, rows_per_step=2, seed=0, pad_id=0, is_encoder_decoder=False)
    _, mask = replay.batch(rows, torch.device("cpu"))
    assert mask.sum(dim=1).tolist() == [1.0, 1.0]


def test_the_kl_term_is_scaled_like_the_loss_over_gradient_accumulation(tiny_llama_dir, tmp_path, one_torch_thread):
    """With num_items_in_batch the Trainer does not divide the loss by the accumulation steps: the KL term must be
    divided here, or replay would weigh 4x more with 4 accumulation steps than with 1."""
    from transformers import TrainingArguments

    from medlora.training.trainer import ReplayTrainer

    loaded = load_base_model(str(tiny_llama_dir))  # a fresh copy: LoRA layers are injected into it
    rows = replay_rows(loaded, ["What is a rash?", "Describe a symptom."], continuation_tokens=4)
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.train()

    def replay() -> DistillationReplay:
        return DistillationReplay(rows, weight=3.0, rows_per_step=2, seed=0, pad_id=0, is_encoder_decoder=False)

    expected_kl = replay().loss(model).item()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=4, use_cpu=True, report_to=[])
    losses = {}
    for name, extra in (("plain", None), ("replay", replay())):
        trainer = ReplayTrainer(model=model, args=args, replay=extra)
        trainer.current_gradient_accumulation_steps = 4
        losses[name] = trainer.compute_loss(model, dict(inputs), num_items_in_batch=torch.tensor(5)).item()
    assert trainer.model_accepts_loss_kwargs  # the Trainer itself will not divide this loss again
    assert losses["replay"] - losses["plain"] == pytest.approx(3.0 * expected_kl / 4, rel=1e-4)
    model.eval()
    assert trainer.compute_loss(model, dict(inputs), num_items_in_batch=torch.tensor(5)).item() == pytest.approx(
        losses["plain"], rel=1e-6)  # evaluation leaves the KL out
