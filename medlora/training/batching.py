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
    """

    def __init__(self) -> None:
        super().__init__(return_position_ids=True, separator_id=IGNORE_INDEX)

    def __call__(self, features: Sequence[dict[str, Any]], return_tensors: str | None = None,
                 separator_id: int | None = None) -> dict[str, Any]:
        rows = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        batch = super().__call__(rows, return_tensors=return_tensors, separator_id=separator_id)
        batch["use_cache"] = False  # with a cache transformers skips the packed mask: see the module docstring
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
                            tolerance: float = 1e-4) -> bool:
    """Does this model give the same loss on a packed batch as on a padded one? (Two short forward passes.)

    Guards against a model class that ignores ``position_ids`` for masking, where packing would let tokens
    attend across examples without any error.
    """
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
            packed = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in PackedCollator()(rows).items()}
            loss_padded = model(**padded, use_cache=False).loss.item()
            loss_packed = model(**packed).loss.item()
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
    if strategy == "auto" and model is not None and not packing_matches_padding(model, examples, tokenizer):
        return grouped
    return BatchingPlan("packed", PackedCollator(), "random",
                        "padding-free: examples concatenated, attention kept within each example")
