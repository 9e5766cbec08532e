"""Distillation replay: hold the adapter to the base model's own next-token distributions outside the specialty.

Why: an adapter trained on one specialty's answers also moves what the model does elsewhere. The demo adapter
answered "Yes" to 6 % of yes/no questions over medical abstracts it never saw where the base said "Yes" to 16 %,
and changed 13 % of the base's answers (docs/RESULTS.md, round 10). Replaying the base's *sampled* answers as
ordinary training rows did not help (round 10): one sample per prompt teaches one answer, and the judgements
moved further.

Here every training micro-batch also reads a few replay rows — team-written prompts outside every specialty
(``replay_prompts.yaml``) followed by the base's own greedy continuation — and adds
``weight x KL(base || adapter)`` over the next-token distributions at the answer's positions: the base's whole
distribution, the first answer token included (where a yes/no judgement is decided), not one sample of it.
The base's distribution comes from the same weights with the adapter switched off (PEFT's
``disable_adapter``), one extra forward pass without gradients, so nothing is stored and no second model is
loaded. This is Learning without Forgetting (Li & Hoiem, 2016) with the frozen base as its own teacher.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from medlora.config import read_yaml_mapping
from medlora.errors import ConfigError
from medlora.models.generation import generate_answers
from medlora.models.loading import LoadedModel
from medlora.models.prompts import build_prompt, prompt_uses_special_tokens, reading_question

log = logging.getLogger(__name__)

REPLAY_PROMPTS = Path(__file__).with_name("replay_prompts.yaml")


def replay_prompts(path: Path = REPLAY_PROMPTS) -> list[str]:
    """The questions of a replay file: its ``general`` prompts, then two reading questions per abstract (about
    the topic it is about, and about one it is not). A broken file is a ConfigError naming it, which the CLI
    prints as one message."""
    doc = read_yaml_mapping(path, what="replay prompt file (training.replay_prompts)", keys="general:, abstracts:")
    prompts = [str(p).strip() for p in doc.get("general") or [] if str(p).strip()]
    for i, entry in enumerate(doc.get("abstracts") or [], start=1):
        missing = [k for k in ("text", "about", "not_about") if not isinstance(entry, dict) or not entry.get(k)]
        if missing:
            raise ConfigError(f"{path}: abstracts entry {i} lacks {', '.join(missing)}; each entry needs text, "
                             "about and not_about")
        prompts += [reading_question(entry["text"], entry[topic]) for topic in ("about", "not_about")]
    return prompts


@dataclass(frozen=True)
class ReplayRow:
    """One prompt and the base's continuation of it, as token ids."""

    prompt_ids: list[int]
    continuation_ids: list[int]


def replay_rows(loaded: LoadedModel, prompts: Sequence[str], continuation_tokens: int,
                batch_size: int = 16) -> list[ReplayRow]:
    """Each prompt with ``loaded``'s greedy continuation (call it before an adapter is attached).

    The continuation gives the KL positions after the first a context the base itself would have written;
    its exact text matters little, since the teacher is evaluated on whatever context the student sees.
    """
    tokenizer, spec = loaded.tokenizer, loaded.spec
    formatted = [build_prompt(tokenizer, spec, p) for p in prompts]
    answers = [a.text for a in generate_answers(loaded.model, tokenizer, spec, formatted,
                                                max_new_tokens=continuation_tokens, batch_size=batch_size,
                                                copy_limit=None)] if continuation_tokens else [""] * len(formatted)
    add_special = prompt_uses_special_tokens(tokenizer, spec)  # as generation and likelihood scoring tokenize
    rows = []
    for text, answer in zip(formatted, answers, strict=True):
        prompt_ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
        continuation = tokenizer(answer, add_special_tokens=False)["input_ids"][:continuation_tokens]
        rows.append(ReplayRow(list(prompt_ids), list(continuation)))
    return rows


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions of ``mask`` of KL(teacher || student) between next-token distributions."""
    teacher = F.log_softmax(teacher_logits.float(), dim=-1)
    student = F.log_softmax(student_logits.float(), dim=-1)
    per_position = (teacher.exp() * (teacher - student)).sum(-1)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


class DistillationReplay:
    """Draws ``rows_per_step`` replay rows per call (a seeded shuffle, cycled) and returns their KL to the base."""

    def __init__(self, rows: Sequence[ReplayRow], *, weight: float, rows_per_step: int, seed: int, pad_id: int,
                 is_encoder_decoder: bool) -> None:
        if not rows:
            raise ValueError("distillation replay needs at least one prompt")
        self.rows, self.weight, self.rows_per_step = list(rows), weight, rows_per_step
        self.pad_id, self.is_encoder_decoder = pad_id, is_encoder_decoder
        self._rng = random.Random(seed)
        self._queue: list[int] = []

    def _draw(self) -> list[ReplayRow]:
        picked = []
        for _ in range(self.rows_per_step):
            if not self._queue:
                self._queue = list(range(len(self.rows)))
                self._rng.shuffle(self._queue)
            picked.append(self.rows[self._queue.pop()])
        return picked

    def batch(self, rows: Sequence[ReplayRow], device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model inputs (right-padded) and the mask of positions whose next-token distribution is matched."""
        if self.is_encoder_decoder:
            enc = _pad([r.prompt_ids for r in rows], self.pad_id)
            dec = _pad([[self.pad_id] + r.continuation_ids for r in rows], self.pad_id)  # T5 starts from pad
            inputs = {"input_ids": enc[0], "attention_mask": enc[1], "decoder_input_ids": dec[0],
                      "decoder_attention_mask": dec[1]}
            mask = dec[1].float()
        else:
            ids, attention = _pad([r.prompt_ids + r.continuation_ids for r in rows], self.pad_id)
            mask = torch.zeros_like(attention, dtype=torch.float)
            for i, r in enumerate(rows):  # from the position that predicts the first answer token to the last
                mask[i, len(r.prompt_ids) - 1 : len(r.prompt_ids) + len(r.continuation_ids)] = 1.0
            inputs = {"input_ids": ids, "attention_mask": attention}
        return {k: v.to(device) for k, v in inputs.items()}, mask.to(device)

    def loss(self, peft_model: Any, *, only_matched_logits: bool = True) -> torch.Tensor:
        """KL(base || adapter) on the next replay rows; ``peft_model`` must be a PeftModel (adapter on).

        ``only_matched_logits``: a decoder-only model projects onto its vocabulary only the positions the KL reads
        (``logits_to_keep`` as a boolean mask), not the whole prompt — the same loss for less work (tested).
        """
        device = next(peft_model.parameters()).device
        inputs, mask = self.batch(self._draw(), device)
        extra: dict[str, Any] = {}
        if not self.is_encoder_decoder:
            extra["use_cache"] = False
            if only_matched_logits:
                extra["logits_to_keep"] = mask.bool()
        with torch.no_grad(), peft_model.disable_adapter():
            teacher = peft_model(**inputs, **extra).logits
        student = peft_model(**inputs, **extra).logits
        if "logits_to_keep" in extra:  # logits come back flattened to the kept positions
            return kl_to_teacher(student, teacher, torch.ones(student.shape[:-1], device=device))
        return kl_to_teacher(student, teacher, mask)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention[i, : len(s)] = 1
    return ids, attention


def build_replay(loaded: LoadedModel, tcfg: Any) -> DistillationReplay | None:
    """The replay of ``training.replay_*``, or None when ``replay_kl_weight`` is 0 (off)."""
    if tcfg.replay_kl_weight <= 0:
        return None
    path = Path(tcfg.replay_prompts) if tcfg.replay_prompts else REPLAY_PROMPTS
    prompts = replay_prompts(path)
    if not prompts:
        raise ConfigError(f"{path}: no replay prompts; add 'general' or 'abstracts' entries, or set "
                          "training.replay_kl_weight to 0")
    rows = replay_rows(loaded, prompts, tcfg.replay_tokens)
    log.info("distillation replay: %d prompts, KL weight %g, %d rows per micro-batch", len(rows),
             tcfg.replay_kl_weight, tcfg.replay_rows)
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return DistillationReplay(rows, weight=tcfg.replay_kl_weight, rows_per_step=tcfg.replay_rows, seed=tcfg.seed,
                              pad_id=pad, is_encoder_decoder=loaded.spec.is_encoder_decoder)
