"""How training examples become batches: no compute spent on padding, no attention across examples.

Three strategies (``training.batching``):

- ``packed``: padding-free. A batch is one row holding the examples back to back, with ``position_ids``
  restarting at 0 for each example. transformers turns restarting positions into a block-diagonal causal mask
  (``masking_utils.find_packed_sequence_indices``), so no token attends to another example — but only when
  the model runs *without a KV cache*: with ``use_cache=True`` (Llama's default, even in training) the packed
  detection is skipped and tokens silently attend across examples (measured on transformers 5.24: the loss
  differs by ~1e-3). The collator therefore puts ``use_cache=False`` into every batch it builds.
- ``grouped``: examples of similar length in the same batch (transformers' ``LengthGroupedSampler`` via
  ``train_sampling_strategy="group_by_length"``), padded to the longest of the batch.
- ``padded``: random order, padded to the longest of the batch (medlora's behaviour before this module).

``auto`` picks ``packed`` for decoder-only models after :func:`packing_matches_padding` confirmed on two real
examples that this model class honours the packed mask, and ``grouped`` otherwise (encoder-decoder models,
or a model class that ignores ``position_ids``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec
from medlora.training.encoding import IGNORE_INDEX

log = logging.getLogger(__name__)

Batching = Literal["auto", "packed", "grouped", "padded"]
BATCHING_CHOICES: tuple[str, ...] = ("auto", "packed", "grouped", "padded")


class PackedCollator(DataCollatorWithFlattening):
    """Padding-free batches: one row of concatenated examples, positions restarting per example.

    Labels keep the answer-only masking of the encoded rows; the first label of each example becomes
    ``IGNORE_INDEX`` (it is never predicted in an unpacked batch either, because of the causal shift).

    ``answer_logits_only``: the loss reads only the positions that predict an answer token, so the batch asks
    the model for those logits alone (``logits_to_keep`` as a boolean mask) and hands the loss its shifted
    labels (``shift_labels``). The prompt — two thirds of a grounded row — then skips the vocabulary projection
    (49k x 576 on SmolLM2, a fifth of the model's matmuls per token) and its cross-entropy, forward and
    backward; the loss and the gradients are the same (tested).
    """

    def __init__(self, answer_logits_only: bool = True) -> None:
        super().__init__(return_position_ids=True, separator_id=IGNORE_INDEX)
        self.answer_logits_only = answer_logits_only

    def __call__(self, features: Sequence[dict[str, Any]], return_tensors: str | None = None,
                 separator_id: int | None = None) -> dict[str, Any]:
        rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        batch = super().__call__(rows, return_tensors=return_tensors, separator_id=separator_id)
        batch["use_cache"] = False  # with a cache transformers skips the packed mask: see the module docstring
        labels = batch["labels"]
        if self.answer_logits_only and isinstance(labels, torch.Tensor):
            shifted = torch.full_like(labels, IGNORE_INDEX)
            shifted[:, :-1] = labels[:, 1:]  # the token each position predicts
            keep = shifted != IGNORE_INDEX
            batch["logits_to_keep"] = keep
            batch["shift_labels"] = shifted[keep]
        return batch


def padded_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """Pad to the longest example of the batch; padded label positions are ignored by the loss."""
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


@dataclass(frozen=True)
class BatchingPlan:
    """What the trainer wires in: the collator, the sampling strategy, and why this strategy was chosen."""

    strategy: str
    collator: Any
    train_sampling_strategy: str  # TrainingArguments.train_sampling_strategy
    reason: str


def packing_matches_padding(model: torch.nn.Module, examples: Sequence[dict[str, list[int]]],
                            tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 48,
                            tolerance: float = 1e-4, collator: PackedCollator | None = None) -> bool:
    """Does this model give the same loss on a packed batch as on a padded one? (Two short forward passes.)

    Guards against a model class that ignores ``position_ids`` for masking, where packing would let tokens
    attend across examples without any error — and, with ``collator``'s answer-only logits, against one that
    does not take a boolean ``logits_to_keep``.
    """
    collator = collator or PackedCollator()
    rows = []
    for example in examples[:2]:
        ids, labels = list(example["input_ids"][:max_tokens]), list(example["labels"][:max_tokens])
        labels[-1] = ids[-1]  # at least one supervised token even when truncation cut the answer off
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    if len(rows) < 2:
        return True  # nothing to pack together
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            padded = {k: v.to(device) for k, v in padded_collator(tokenizer)(rows).items()}
            packed = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in collator(rows).items()}
            loss_padded = model(**padded, use_cache=False).loss.item()
            try:
                loss_packed = model(**packed).loss.item()
            except (TypeError, ValueError, RuntimeError, IndexError) as error:  # a kwarg this model class lacks
                log.warning("packed batches fail on this model (%s)", error)
                return False
    finally:
        model.train(was_training)
    ok = abs(loss_padded - loss_packed) <= tolerance * max(1.0, abs(loss_padded))
    if not ok:
        log.warning("packed batches change this model's loss (%.6f vs %.6f padded): using length-grouped batches",
                    loss_packed, loss_padded)
    return ok


def plan_batching(strategy: str, spec: ModelSpec, tokenizer: PreTrainedTokenizerBase,
                  model: torch.nn.Module | None = None,
                  examples: Sequence[dict[str, list[int]]] = ()) -> BatchingPlan:
    """Choose the collator and sampler for ``training.batching``; ``auto`` verifies packing first."""
    if strategy not in BATCHING_CHOICES:
        raise ValueError(
            f"training.batching: unknown strategy {strategy!r}; choose one of {', '.join(BATCHING_CHOICES)}")
    grouped = BatchingPlan("grouped", padded_collator(tokenizer), "group_by_length",
                           "examples of similar length batched together, padded to the batch's longest")
    if strategy == "padded":
        return BatchingPlan("padded", padded_collator(tokenizer), "random",
                            "random order, padded to the batch's longest")
    if strategy == "grouped":
        return grouped
    if spec.is_encoder_decoder:
        if strategy == "packed":
            raise ValueError("training.batching: packed needs a decoder-only model; use grouped for "
                             f"encoder-decoder models ({spec.model_type})")
        return grouped
    packed = BatchingPlan("packed", PackedCollator(), "random",
                          "padding-free: examples concatenated, attention kept within each example, logits for "
                          "answer tokens only")
    if strategy == "auto" and model is not None:
        if packing_matches_padding(model, examples, tokenizer, collator=packed.collator):
            return packed
        every_logit = PackedCollator(answer_logits_only=False)
        if packing_matches_padding(model, examples, tokenizer, collator=every_logit):
            return BatchingPlan("packed", every_logit, "random",
                                "padding-free: examples concatenated, attention kept within each example")
        return grouped
    return packed
