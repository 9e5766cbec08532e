"""Batched greedy generation with per-answer latency, shared by evaluation and the service.

Both variants (base and adapter) go through this one function with the same token budget, so their
numbers differ only by the adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec
from medlora.models.precision import autocast, resolve_precision
from medlora.training.encoding import prompt_uses_special_tokens


# Greedy decoding, shared by evaluation and the bot so both see the same answers. Forbidding repeated token
# 4-grams was tried against the loops small models fall into and measured worse (it also bans repeating a
# multi-token clinical term): see docs/RESULTS.md.
GREEDY_DECODING = {"do_sample": False, "num_beams": 1}


@dataclass
class Generation:
    text: str
    seconds: float  # wall time of the batch divided by its size: the amortised cost of one answer
    new_tokens: int


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    adapter_names: Sequence[str] | None = None,
) -> list[Generation]:
    """Greedy-decode one batch of already-formatted prompts."""
    tokenizer.padding_side = "right" if spec.is_encoder_decoder else "left"  # decoder-only must pad left
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=add_special)
    inputs = inputs.to(next(model.parameters()).device)
    kwargs = {}
    if adapter_names is not None:
        kwargs["adapter_names"] = list(adapter_names)
    started = time.perf_counter()
    with torch.inference_mode(), autocast(resolve_precision(), inputs["input_ids"].device):
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            **GREEDY_DECODING,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **kwargs,
        )
    seconds = (time.perf_counter() - started) / len(prompts)
    new = output if spec.is_encoder_decoder else output[:, inputs["input_ids"].shape[1] :]
    results = []
    for row in new:
        ids = [t for t in row.tolist() if t not in (tokenizer.pad_token_id,)]
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        if spec.is_encoder_decoder and ids and ids[0] == model.config.decoder_start_token_id:
            ids = ids[1:]
        results.append(Generation(tokenizer.decode(ids, skip_special_tokens=True).strip(), seconds, len(ids)))
    return results


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Generate for many prompts, ``batch_size`` at a time; ``on_batch(n)`` drives a progress bar."""
    results: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        results.extend(generate_batch(model, tokenizer, spec, chunk, max_new_tokens=max_new_tokens))
        if on_batch:
            on_batch(len(chunk))
    return results
