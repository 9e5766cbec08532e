"""Turn records into token ids with the loss on answer tokens only.

The prompt is built by :func:`medlora.models.prompts.build_prompt`, the same function inference uses, so the
adapter is trained on exactly the format it will be asked in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from medlora.data.records import QARecord
from medlora.models.architecture import ModelSpec
from medlora.models.prompts import build_prompt

IGNORE_INDEX = -100  # positions the loss skips (prompt and padding)


def prompt_uses_special_tokens(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> bool:
    """A chat-templated prompt already carries its special tokens; adding BOS again would shift the format."""
    return not (not spec.is_encoder_decoder and getattr(tokenizer, "chat_template", None))


def encode_record(
    tokenizer: PreTrainedTokenizerBase, spec: ModelSpec, question: str, answer: str, max_length: int
) -> dict[str, list[int]]:
    prompt = build_prompt(tokenizer, spec, question)
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special, truncation=True, max_length=max_length)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if spec.is_encoder_decoder:
        labels = answer_ids[: max_length - 1] + [eos]
        return {"input_ids": prompt_ids, "attention_mask": [1] * len(prompt_ids), "labels": labels}
    # Decoder-only: keep at most half the budget for the prompt so long questions never crowd out the answer.
    prompt_ids = prompt_ids[-(max_length // 2) :]
    answer_ids = (answer_ids + [eos])[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def build_dataset(
    records: Sequence[QARecord], tokenizer: PreTrainedTokenizerBase, spec: ModelSpec, max_length: int
) -> Dataset:
    rows: list[dict[str, Any]] = [{"question": r.question, "answer": r.answer} for r in records]
    dataset = Dataset.from_list(rows)
    return dataset.map(
        lambda row: encode_record(tokenizer, spec, row["question"], row["answer"], max_length),
        remove_columns=["question", "answer"],
        desc="Tokenizing",
    )
