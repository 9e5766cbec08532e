"""Turn records into token ids with the loss on answer tokens only.

The prompt is built by :func:`medlora.models.prompts.build_prompt`, the same function inference uses, so the
adapter is trained on exactly the format it will be asked in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from medlora.data.records import QARecord, snippet
from medlora.models.architecture import ModelSpec
from medlora.models.prompts import build_prompt

IGNORE_INDEX = -100  # positions the loss skips (prompt and padding)


def prompt_uses_special_tokens(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> bool:
    """A chat-templated prompt already carries its special tokens; adding BOS again would shift the format."""
    return not (not spec.is_encoder_decoder and getattr(tokenizer, "chat_template", None))


def encode_record(
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    question: str,
    answer: str,
    max_length: int,
    sources: Sequence[tuple[int, str, str]] = (),
) -> dict[str, list[int]]:
    prompt = build_prompt(tokenizer, spec, question, sources)
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


_FIRST_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])(?=\s+[A-Z])")


def cite_in_answer(answer: str, number: int) -> str:
    """Put ``[number]`` after the answer's first sentence (or at its end): where a grounded answer cites."""
    match = _FIRST_SENTENCE_END.search(answer)
    if match is None:
        return f"{answer} [{number}]"
    return f"{answer[: match.start() - 1]} [{number}]{answer[match.start() - 1 :]}"


def with_cited_sources(
    records: Sequence[QARecord], fraction: float, seed: int, top_k: int = 3
) -> list[tuple[QARecord, list[tuple[int, str, str]], str]]:
    """Rows ``(record, sources, answer)``; a seeded ``fraction`` of them answer from sources, citing them.

    A cited row puts the record's own document among ``top_k`` sources (the others from different diseases,
    in random order) exactly as the bot's prompt shows retrieved sources, and cites it after the first
    sentence. Without such rows a small model never learns the ``[n]`` convention the bot relies on.
    """
    rng = random.Random(seed)
    rows = []
    for record in records:
        if fraction <= 0 or rng.random() >= fraction or len(records) < top_k:
            rows.append((record, [], record.answer))
            continue
        others = [o for o in rng.sample(list(records), min(len(records), 4 * top_k))
                  if o.split_group() != record.split_group()][: top_k - 1]
        documents = [record, *others]
        rng.shuffle(documents)
        sources = [(i, d.focus or d.question, snippet(d.answer)) for i, d in enumerate(documents, start=1)]
        rows.append((record, sources, cite_in_answer(record.answer, documents.index(record) + 1)))
    return rows


def build_dataset(
    records: Sequence[QARecord],
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    max_length: int,
    cited_fraction: float = 0.0,
    seed: int = 0,
) -> Dataset:
    rows: list[dict[str, Any]] = [
        {"question": r.question, "answer": answer,
         "sources": [{"number": n, "title": title, "text": text} for n, title, text in sources]}
        for r, sources, answer in with_cited_sources(records, cited_fraction, seed)
    ]
    dataset = Dataset.from_list(rows)
    return dataset.map(
        lambda row: encode_record(tokenizer, spec, row["question"], row["answer"], max_length,
                                  [(s["number"], s["title"], s["text"]) for s in row["sources"] or []]),
        remove_columns=["question", "answer", "sources"],
        desc="Tokenizing",
    )
