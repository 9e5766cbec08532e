"""Padding-free packing and length grouping: same loss as unpacked batches, no attention across examples."""

from __future__ import annotations

import json

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments

from medlora.config import MedloraConfig, TrainingConfig
from medlora.data.prepare import prepare_dataset
from medlora.models.architecture import describe_model
from medlora.training.batching import PackedCollator, packing_matches_padding, padded_collator, plan_batching
from medlora.training.encoding import IGNORE_INDEX, encode_record
from medlora.training.lora import build_lora_config
from medlora.training.trainer import train_adapter

QUESTIONS = [
    ("What is psoriasis?", "Psoriasis shows well demarcated erythematous plaques with silvery scale."),
    ("How is heart failure treated?", "Beta blockers and ACE inhibitors."),
    ("What does basal cell carcinoma look like?", "A pearly papule with arborizing telangiectasia on dermoscopy."),
    ("What is atrial fibrillation?", "An irregularly irregular rhythm."),
]


def _rows(tokenizer, spec):
    return [encode_record(tokenizer, spec, q, a, max_length=64) for q, a in QUESTIONS]


def _losses(model, tokenizer, rows):
    padded = padded_collator(tokenizer)(rows)
    packed = PackedCollator()(rows)
    return model(**padded).loss, model(**packed).loss, padded, packed


@pytest.mark.parametrize("answer_logits_only", [True, False])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_padded(attention, answer_logits_only, tiny_llama_dir, tiny_tokenizer,
                                                one_torch_thread):
    """Same loss within 1e-4, and the same LoRA gradients: nothing leaks between packed examples, and computing
    logits for the answer positions alone changes neither."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation=attention)
    spec = describe_model(model.config)
    peft_model = get_peft_model(model, build_lora_config(TrainingConfig(lora_dropout=0.0), spec))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # B = 0 would make the adapter a no-op
    peft_model.train()
    rows = _rows(tiny_tokenizer, spec)
    assert len({len(r["input_ids"]) for r in rows}) > 1, "examples must differ in length to test padding"

    padded = padded_collator(tiny_tokenizer)(rows)
    packed = PackedCollator(answer_logits_only=answer_logits_only)(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert (padded["attention_mask"] == 0).any(), "the padded batch should contain padding"

    loss_padded = peft_model(**padded).loss
    grads_padded = torch.autograd.grad(loss_padded, [p for p in peft_model.parameters() if p.requires_grad])
    loss_packed = peft_model(**packed).loss
    grads_packed = torch.autograd.grad(loss_packed, [p for p in peft_model.parameters() if p.requires_grad])
    assert abs(loss_padded.item() - loss_packed.item()) < 1e-4
    for a, b in zip(grads_padded, grads_packed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    # Supervised tokens are the same set: answer tokens only, and never an example's first token.
    supervised_padded = int((padded["labels"] != IGNORE_INDEX).sum())
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == supervised_padded
    if answer_logits_only:  # one row of logits per supervised token, far fewer than the packed tokens
        with torch.no_grad():
            logits = peft_model(**packed).logits
        assert logits.shape[-2] == supervised_padded < packed["input_ids"].shape[1]


def test_packed_example_does_not_see_its_neighbour(tiny_llama_dir, tiny_tokenizer, one_torch_thread):
    """The second example's logits are the same packed after a neighbour as when it runs alone."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    spec = describe_model(model.config)
    rows = _rows(tiny_tokenizer, spec)[:2]
    packed = PackedCollator(answer_logits_only=False)(rows)  # every position's logits, to compare them
    with torch.no_grad():
        together = model(**packed).logits[0, len(rows[0]["input_ids"]):]
        alone = model(input_ids=torch.tensor([rows[1]["input_ids"]])).logits[0]
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("answer_logits_only", [True, False])
def test_trainer_loss_is_the_same_packed_or_padded(answer_logits_only, tiny_llama_dir, tiny_tokenizer, tmp_path,
                                                   one_torch_thread):
    """Through Trainer.compute_loss (its token-count normalisation included), packed == padded."""
    from datasets import Dataset

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    spec = describe_model(model.config)
    rows = _rows(tiny_tokenizer, spec)
    losses = {}
    packed = PackedCollator(answer_logits_only=answer_logits_only)
    for name, collator in {"padded": padded_collator(tiny_tokenizer), "packed": packed}.items():
        args = TrainingArguments(output_dir=str(tmp_path / name), per_device_eval_batch_size=4, report_to=[],
                                 use_cpu=True, remove_unused_columns=False, label_names=["labels"])
        trainer = Trainer(model=model, args=args, data_collator=collator, eval_dataset=Dataset.from_list(rows))
        losses[name] = trainer.evaluate()["eval_loss"]
    assert abs(losses["padded"] - losses["packed"]) < 1e-4


class _IgnoresPositions(torch.nn.Module):
    """A model class that drops ``position_ids``: packing would silently mix examples in it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, position_ids=None, **kwargs):
        return self.inner(**kwargs)


def test_auto_falls_back_to_grouping_when_the_model_ignores_packing(tiny_llama_dir, tiny_tokenizer, caplog):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    spec = describe_model(model.config)
    rows = _rows(tiny_tokenizer, spec)
    assert packing_matches_padding(model, rows, tiny_tokenizer)
    plan = plan_batching("auto", spec, tiny_tokenizer, model, rows)
    assert plan.strategy == "packed" and plan.collator.answer_logits_only
    broken = _IgnoresPositions(model)
    assert not packing_matches_padding(broken, rows, tiny_tokenizer)
    plan = plan_batching("auto", spec, tiny_tokenizer, broken, rows)
    assert plan.strategy == "grouped" and plan.train_sampling_strategy == "group_by_length"
    assert "packed batches change this model's loss" in caplog.text


def test_encoder_decoder_gets_length_grouping_and_a_clear_error_for_packing(tiny_t5_dir, tiny_tokenizer):
    spec = describe_model(AutoConfig.from_pretrained(tiny_t5_dir))
    assert plan_batching("auto", spec, tiny_tokenizer).strategy == "grouped"
    with pytest.raises(ValueError, match="packed needs a decoder-only model"):
        plan_batching("packed", spec, tiny_tokenizer)
    assert plan_batching("padded", spec, tiny_tokenizer).train_sampling_strategy == "random"


def _config(model_dir, qa_jsonl, tmp_path, **overrides) -> MedloraConfig:
    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    return MedloraConfig().with_overrides({
        "models.llm.name": str(model_dir), "data.specialty": str(terms), "data.sources": [str(qa_jsonl)],
        "training.epochs": 1, "training.batch_size": 4, "training.gradient_accumulation_steps": 1,
        "training.max_length": 64, "training.save_steps": 50, "training.lora_dropout": 0.0,
        "training.grounded_fraction": 0.0, **overrides,
    })


def test_train_adapter_packed_matches_padded(tiny_llama_dir, qa_jsonl, tmp_path, one_torch_thread):
    """Same data order and seed through ``train_adapter``: the first step's loss (identical weights) agrees
    within 1e-4; later steps only drift by float rounding that Adam's normalisation amplifies."""
    cfg = _config(tiny_llama_dir, qa_jsonl, tmp_path, **{"training.logging_steps": 1})
    data_dir = tmp_path / "data"
    prepare_dataset(cfg.data, output_dir=data_dir)
    results, weights, first_loss = {}, {}, {}
    for strategy in ("padded", "packed"):
        run = cfg.with_overrides({"training.batching": strategy})
        torch.manual_seed(0)  # the LoRA A matrices are drawn when the model is wrapped, before Trainer seeds
        results[strategy] = train_adapter(run, data_dir, tmp_path / strategy)
        weights[strategy] = load_file(tmp_path / strategy / "adapter_model.safetensors")
        card = json.loads((tmp_path / strategy / "medlora.json").read_text())
        assert card["hyperparameters"]["batching"] == strategy
        history = json.loads((tmp_path / strategy / "training_log.json").read_text())["log_history"]
        first_loss[strategy] = next(e["loss"] for e in history if "loss" in e)
    assert abs(first_loss["padded"] - first_loss["packed"]) < 1e-4
    assert abs(results["padded"].eval_loss - results["packed"].eval_loss) < 2e-3
    for key, tensor in weights["padded"].items():
        torch.testing.assert_close(weights["packed"][key], tensor, atol=2e-3, rtol=0.05)
