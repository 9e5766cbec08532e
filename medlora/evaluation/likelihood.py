"""Multiple choice by log-likelihood, like lm-evaluation-harness ``acc`` / ``acc_norm``.

Each option is scored as the sum of the log-probabilities of its tokens given the prompt (teacher forcing),
for decoder-only models (prompt + option in one sequence) and encoder-decoder models (prompt to the
encoder, option as decoder labels). ``acc_norm`` divides that sum by the option's length in characters, so
long disease names are not penalised for having more tokens.
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
    """Log-likelihood of each option given ``prompt`` (one forward pass for all options)."""
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
        sequences = [context + cont for cont in continuations]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(options), width), pad, dtype=torch.long, device=device)
        attention = torch.zeros_like(input_ids)
        for row, seq in enumerate(sequences):  # right padding: positions line up with the context
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
        logits = model(input_ids=input_ids, attention_mask=attention).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        totals = []
        start = len(context)
        for row, cont in enumerate(continuations):
            # the token at position p is predicted by the logits at position p - 1
            predicted = logprobs[row, start - 1 : start - 1 + len(cont)]
            target = torch.tensor(cont, device=device).unsqueeze(-1)
            totals.append(float(predicted.gather(-1, target).sum()))
    return [OptionScore(float(t), len(o)) for t, o in zip(totals, options, strict=True)]
