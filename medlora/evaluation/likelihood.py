"""Multiple choice by log-likelihood, like lm-evaluation-harness ``acc`` / ``acc_norm``.

Each option is scored as the sum of the log-probabilities of its tokens given the prompt (teacher forcing),
for decoder-only models (the prompt read once, each option scored on a copy of its KV cache) and
encoder-decoder models (prompt to the encoder, option as decoder labels). ``acc_norm`` divides that sum by the
option's length in characters, so long disease names are not penalised for having more tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec
from medlora.models.prompts import prompt_uses_special_tokens


@dataclass(frozen=True)
class OptionScore:
    loglikelihood: float  # sum over the option's tokens
    chars: int

    @property
    def normalised(self) -> float:
        return self.loglikelihood / max(self.chars, 1)


def choose(scores: Sequence[OptionScore], normalise: bool = True) -> int:
    """Index of the best option (first one on ties)."""
    values = [s.normalised if normalise else s.loglikelihood for s in scores]
    return max(range(len(values)), key=lambda i: (values[i], -i))


@torch.inference_mode()
def score_options(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompt: str,
    options: Sequence[str],
    max_prompt_tokens: int = 1024,
) -> list[OptionScore]:
    """Log-likelihood of each option given ``prompt``.

    Decoder-only models read the prompt once and score every option on a copy of its KV cache, so a vignette
    with five options costs one prompt forward, not five (and a one-token "Yes"/"No" needs no second pass).
    """
    if not options:
        return []
    device = next(model.parameters()).device
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    context = tokenizer(prompt, add_special_tokens=add_special)["input_ids"][-max_prompt_tokens:]
    if not context and not spec.is_encoder_decoder:  # the first option token needs something to follow
        context = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    # A plain "Answer:" prompt needs the space a written answer would start with; a chat prompt ends in "\n".
    delimiter = "" if spec.is_encoder_decoder or not prompt or prompt[-1].isspace() else " "
    continuations = [tokenizer(delimiter + o, add_special_tokens=False)["input_ids"] or
                     [tokenizer.eos_token_id] for o in options]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    if spec.is_encoder_decoder:
        width = max(len(c) for c in continuations)
        input_ids = torch.tensor([context] * len(options), device=device)
        labels = torch.full((len(options), width), -100, dtype=torch.long, device=device)
        for row, cont in enumerate(continuations):
            labels[row, : len(cont)] = torch.tensor(cont)
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        mask = labels != -100
        gathered = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        totals = gathered.sum(dim=-1).tolist()
    else:
        totals = _decoder_totals(model, context, continuations, pad, device)
    return [OptionScore(float(t), len(o)) for t, o in zip(totals, options, strict=True)]


def _decoder_totals(model: torch.nn.Module, context: list[int], continuations: list[list[int]], pad: int,
                    device: torch.device) -> list[float]:
    """Sum of each continuation's token log-probabilities after ``context``, the context read once."""
    out = model(input_ids=torch.tensor([context], device=device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each continuation's first token
    totals = [float(first[cont[0]]) for cont in continuations]
    width = max(len(c) for c in continuations) - 1
    if width <= 0:
        return totals
    # transformers renamed ``past_key_values`` to ``cache`` during 5.x; the output says which this one takes.
    cache_name = "cache" if getattr(out, "cache", None) is not None else "past_key_values"
    cache = getattr(out, cache_name)
    cache.batch_repeat_interleave(len(continuations))
    # Every continuation but its last token, right-padded: the positions after the context line up.
    input_ids = torch.full((len(continuations), width), pad, dtype=torch.long, device=device)
    attention = torch.zeros((len(continuations), len(context) + width), dtype=torch.long, device=device)
    attention[:, : len(context)] = 1
    for row, cont in enumerate(continuations):
        input_ids[row, : len(cont) - 1] = torch.tensor(cont[:-1])
        attention[row, len(context) : len(context) + len(cont) - 1] = 1
    logits = model(input_ids=input_ids, attention_mask=attention, use_cache=True, **{cache_name: cache}).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for row, cont in enumerate(continuations):
        if len(cont) > 1:  # the logits at position j predict the continuation's token j + 1
            target = torch.tensor(cont[1:], device=device).unsqueeze(-1)
            totals[row] += float(logprobs[row, : len(cont) - 1].gather(-1, target).sum())
    return totals
