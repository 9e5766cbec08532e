"""The one generation path: batched greedy decoding with a loop stop, in-range citations and a copy limit.

Evaluation, the bot and the benchmarks all decode through :func:`decoding_kwargs`, so every figure describes
the answers users get. Two guards run inside ``generate``, and a third is available:

- **Loop stop.** Small models fall into loops ("Melanoma is a type of skin cancer ..." eleven times). Banning
  repeated 4-grams was measured worse (it also bans repeating a multi-token clinical term); instead a row stops
  as soon as its last ``loop_ngram`` tokens already occurred in its answer, and that repeated tail is cut.
- **Citations in range.** With ``k`` numbered sources in the prompt, a ``[`` may only be followed by a digit
  1..k, and never by a second digit: the raw output cannot cite a source it was not shown.
- **Stated inheritance.** A small model shown a source that says "autosomal recessive" still writes "autosomal
  dominant" about as often as it copies the source. When a row's shown sources state one qualifier of a mode
  of inheritance and not the other (autosomal recessive, never autosomal dominant), the other qualifier may not
  follow "autosomal" (or "X-linked") in its answer: an answer can still say nothing about inheritance, or name
  what the sources name, but not contradict all of them. Rows without sources, or whose sources state both or
  neither, are untouched (:class:`StatedInheritance`).
- **Copy limit.** Shown sources, a small model copies the first one verbatim — its title, its definition —
  whether or not it answers the question, and restates the question itself when it has nothing to say. No
  answer may repeat more than ``MAX_COPIED_TOKENS`` consecutive tokens of its prompt: terms, names and short
  facts ("autosomal recessive") still pass, a copied sentence does not. Off by default: measured on the
  validation split it did not raise the adapter's scores and lowered the base's (bench/decoding_sweep.py,
  docs/RESULTS.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from medlora.data.inheritance import inheritance_patterns
from medlora.models.architecture import ModelSpec
from medlora.models.loops import cut_repetition
from medlora.models.precision import autocast, resolve_precision
from medlora.models.prompts import prompt_uses_special_tokens

GREEDY_DECODING = {"do_sample": False, "num_beams": 1}
LOOP_NGRAM = 12  # tokens; about two clinical phrases: a repeat this long is a loop, not a repeated term
MAX_COPIED_TOKENS: int | None = None  # longest verbatim copy of the prompt an answer may hold; None = no limit
GUARD_STATED_INHERITANCE = True  # StatedInheritance on for rows with sources; chosen by bench/inheritance_fidelity.py


@dataclass
class Generation:
    text: str
    seconds: float  # wall time of the batch divided by its size: the amortised cost of one answer
    new_tokens: int
    loop_stopped: bool = False  # the loop stop cut this answer


class LoopStop(StoppingCriteria):
    """Marks a row done when its last ``n`` generated tokens already occurred earlier in its answer."""

    def __init__(self, prompt_length: int, n: int = LOOP_NGRAM) -> None:
        self.prompt_length = prompt_length
        self.n = n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_length :]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if generated.shape[1] <= self.n:
            return cast(torch.BoolTensor, done)
        for row in range(generated.shape[0]):
            done[row] = repeats_tail(generated[row], self.n)
        return cast(torch.BoolTensor, done)


def repeats_tail(ids: torch.Tensor, n: int) -> bool:
    """Whether the last ``n`` ids of ``ids`` occur earlier in ``ids`` (overlaps allowed)."""
    if ids.shape[0] <= n:
        return False
    windows = ids[:-1].unfold(0, n, 1)
    return bool((windows == ids[-n:]).all(dim=1).any())


@lru_cache(maxsize=8)
def _bracket_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[frozenset[int], frozenset[int], dict[str, int]]:
    """Token ids that open ``[``, that close ``]``, and the single-digit tokens, from the vocabulary."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    opening = frozenset(i for i, t in enumerate(tokens) if t and t.endswith("["))
    closing = frozenset(i for i, t in enumerate(tokens) if t and "]" in t)
    digits = {t: i for i, t in enumerate(tokens) if t in tuple("0123456789")}
    return opening, closing, digits


class CitationRange(LogitsProcessor):
    """Inside ``[...]`` allow only the digits 1..``k`` (one digit per number): no invented source numbers."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int, k: int | Sequence[int]) -> None:
        self.opening, self.closing, digits = _bracket_tokens(tokenizer)
        self.prompt_length = prompt_length
        self.k = k if isinstance(k, int) else None
        self.limits = [] if isinstance(k, int) else list(k)
        self.digit_ids = [digits[str(d)] for d in range(10) if str(d) in digits]
        self.allowed = {n: [digits[str(d)] for d in range(1, min(n, 9) + 1) if str(d) in digits] for n in range(10)}

    def _limit(self, row: int) -> int:
        return self.k if self.k is not None else self.limits[row]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, ids in enumerate(generated):
            inside = False
            for token in ids:
                if token in self.opening:
                    inside = True
                elif token in self.closing:
                    inside = False
            if not inside:
                continue
            banned = set(self.digit_ids)
            if not (ids and ids[-1] in banned):  # a second digit in a row is never allowed
                banned -= set(self.allowed[max(0, min(self._limit(row), 9))])
            if banned:
                scores[row, list(banned)] = float("-inf")
        return scores


class CopyLimit(LogitsProcessor):
    """Bans the token that would make an answer repeat more than ``limit`` consecutive tokens of its prompt.

    ``prompts`` are the rows' prompt ids without padding. Every ``limit + 1``-gram of a prompt is indexed by
    its first ``limit`` tokens; at each step the row's last ``limit`` generated tokens look up the next tokens
    that would complete a longer copy. EOS is never banned, so a row can always end.
    """

    def __init__(self, prompts: Sequence[Sequence[int]], prompt_length: int, limit: int,
                 never_banned: Sequence[int] = ()) -> None:
        if limit < 1:
            raise ValueError(f"copy limit must be at least 1 token, got {limit}")
        self.limit = limit
        self.prompt_length = prompt_length
        self.never_banned = set(never_banned)
        self.continuations: list[dict[tuple[int, ...], set[int]]] = []
        for ids in prompts:
            table: dict[tuple[int, ...], set[int]] = {}
            for start in range(len(ids) - limit):
                table.setdefault(tuple(ids[start : start + limit]), set()).add(ids[start + limit])
            self.continuations.append(table)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] < self.limit:
            return scores
        for row, tail in enumerate(generated[:, -self.limit :].tolist()):
            banned = self.continuations[row].get(tuple(tail), set()) - self.never_banned
            if banned:
                scores[row, list(banned)] = float("-inf")
        return scores


_MODE_PREFIXES = ("autosomal", "x-linked")
_TAIL_TOKENS = 16  # enough to hold "autosomal " however finely a tokenizer splits it
_QUALIFIERS = ("dominant", "recessive")
_ENDS_WITH_PREFIX = re.compile(r"\b(autosomal|x[\s-]*linked)[\s-]*$", re.IGNORECASE)


def banned_qualifiers(source_text: str) -> dict[str, str]:
    """``{prefix: qualifier}`` that an answer shown ``source_text`` may not write after ``prefix``: for each
    of "autosomal" and "x-linked", the qualifier the sources do not state when they state the other one."""
    stated = inheritance_patterns(source_text)
    banned = {}
    for prefix in _MODE_PREFIXES:
        named = [q for q in _QUALIFIERS if f"{prefix} {q}" in stated]
        if len(named) == 1:
            banned[prefix] = next(q for q in _QUALIFIERS if q != named[0])
    return banned


@lru_cache(maxsize=8)
def _qualifier_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, frozenset[int]]:
    """Per qualifier, the token ids that can begin writing it ("d", "dom", " dominant", "-Dominant" ...): only
    ever banned right after "autosomal" / "X-linked", where nothing else starting so is written."""
    tokens = [cast(str, tokenizer.decode([i])) for i in range(len(tokenizer))]
    starts: dict[str, set[int]] = {q: set() for q in _QUALIFIERS}
    for i, token in enumerate(tokens):
        core = token.lstrip(" -\u2010\u2011").lower()
        if not core:
            continue
        for qualifier in _QUALIFIERS:
            if qualifier.startswith(core) or core.startswith(qualifier):
                starts[qualifier].add(i)
    return {q: frozenset(ids) for q, ids in starts.items()}


class StatedInheritance(LogitsProcessor):
    """Bans, right after "autosomal" / "X-linked", the qualifier that contradicts every shown source.

    ``banned[row]`` comes from :func:`banned_qualifiers` of the row's shown sources (empty: no constraint).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int,
                 banned: Sequence[dict[str, str]]) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.banned = list(banned)
        self.starts = _qualifier_tokens(tokenizer)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        for row, rules in enumerate(self.banned):
            if not rules or generated.shape[1] == 0:
                continue
            tail = cast(str, self.tokenizer.decode(generated[row, -_TAIL_TOKENS:].tolist(), skip_special_tokens=True))
            match = _ENDS_WITH_PREFIX.search(tail)
            if match is None:
                continue
            prefix = "autosomal" if match.group(1).lower() == "autosomal" else "x-linked"
            qualifier = rules.get(prefix)
            if qualifier:
                scores[row, list(self.starts[qualifier])] = float("-inf")
        return scores


def shown_text(sources: Iterable[Any]) -> str:
    """What :class:`StatedInheritance` reads of a row's shown sources (anything with ``.text``): their texts
    joined, "" for none."""
    return " ".join(source.text for source in sources)


def prompt_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[list[int]]:
    """Each row's prompt ids with the padding (left or right) removed."""
    if attention_mask is None:
        return cast(list[list[int]], input_ids.tolist())
    return [[t for t, keep in zip(ids, mask, strict=True) if keep]
            for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True)]


def decoding_kwargs(
    tokenizer: PreTrainedTokenizerBase,
    prompt_length: int,
    max_new_tokens: int,
    *,
    citations: int | Sequence[int] | None = None,
    extra_stops: Sequence[StoppingCriteria] = (),
    fixed_length: bool = False,
    prompts: Sequence[Sequence[int]] | None = None,
    copy_limit: int | None = MAX_COPIED_TOKENS,
    source_texts: Sequence[str] | None = None,
) -> dict[str, object]:
    """Keyword arguments for ``model.generate``: greedy, loop stop, the citation range and the copy limit.

    ``prompt_length`` is the prompt's length in tokens for a decoder-only model and 0 for an encoder-decoder;
    ``citations`` is the number of numbered sources per row (one int for all rows, or one per row);
    ``prompts``, each row's unpadded prompt ids, turn on ``copy_limit`` (see :class:`CopyLimit`).
    ``source_texts``, each row's shown sources joined (empty for none), turn on :class:`StatedInheritance`
    when :data:`GUARD_STATED_INHERITANCE` is set.
    ``fixed_length``: exactly ``max_new_tokens`` tokens, no loop stop — for latency timing, where every
    variant must produce the same amount of work.
    """
    if fixed_length:
        return {**GREEDY_DECODING, "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens,
                "pad_token_id": tokenizer.pad_token_id}
    stops = StoppingCriteriaList([LoopStop(prompt_length), *extra_stops])
    processors = LogitsProcessorList()
    if citations is not None:
        processors.append(CitationRange(tokenizer, prompt_length, citations))
    if copy_limit is not None and prompts is not None:
        specials = [t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if isinstance(t, int)]
        processors.append(CopyLimit(prompts, prompt_length, copy_limit, never_banned=specials))
    if GUARD_STATED_INHERITANCE and source_texts is not None:
        banned = [banned_qualifiers(text) for text in source_texts]
        if any(banned):
            processors.append(StatedInheritance(tokenizer, prompt_length, banned))
    return {
        **GREEDY_DECODING,
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "stopping_criteria": stops,
        "logits_processor": processors,
    }


def answer_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, spec: ModelSpec,
               row: list[int]) -> list[int]:
    """The answer's token ids in one generated row: padding, everything from EOS and T5's start token dropped."""
    ids = [t for t in row if t != tokenizer.pad_token_id]
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    if spec.is_encoder_decoder and ids and ids[0] == model.config.decoder_start_token_id:
        ids = ids[1:]
    return ids


def decode_new_tokens(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, spec: ModelSpec,
                      row: list[int]) -> tuple[str, int, bool]:
    """Text of one generated row: padding and everything from EOS dropped, a loop's repeated tail cut."""
    ids = answer_ids(tokenizer, model, spec, row)
    # The loop stop ended a looping row; the cut is textual (one definition, medlora.models.loops), so a
    # streamed answer (cut by RepetitionGuard as it goes) and a batched one end at the same character.
    text, repeated = cut_repetition(cast(str, tokenizer.decode(ids, skip_special_tokens=True)))
    return text.strip(), len(ids), repeated


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    adapter_names: Sequence[str] | None = None,
    citations: int | Sequence[int] | None = None,
    copy_limit: int | None = MAX_COPIED_TOKENS,
    source_texts: Sequence[str] | None = None,
) -> list[Generation]:
    """Greedy-decode one batch of already-formatted prompts (``source_texts``: see :func:`decoding_kwargs`)."""
    tokenizer.padding_side = "right" if spec.is_encoder_decoder else "left"  # decoder-only must pad left
    add_special = prompt_uses_special_tokens(tokenizer, spec)
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=add_special)
    inputs = inputs.to(next(model.parameters()).device)
    prompt_length = 0 if spec.is_encoder_decoder else inputs["input_ids"].shape[1]
    rows = prompt_rows(inputs["input_ids"], inputs.get("attention_mask")) if copy_limit is not None else None
    kwargs = decoding_kwargs(tokenizer, prompt_length, max_new_tokens, citations=citations, copy_limit=copy_limit,
                             prompts=rows, source_texts=source_texts)
    if adapter_names is not None:
        kwargs["adapter_names"] = list(adapter_names)
    started = time.perf_counter()
    with torch.inference_mode(), autocast(resolve_precision(), inputs["input_ids"].device):
        # generate comes from GenerationMixin, which PreTrainedModel no longer declares.
        output = model.generate(**inputs, **kwargs)  # type: ignore[operator]
    seconds = (time.perf_counter() - started) / len(prompts)
    new = output if spec.is_encoder_decoder else output[:, prompt_length:]
    results = []
    for row in new.tolist():
        text, new_tokens, looped = decode_new_tokens(tokenizer, model, spec, row)
        results.append(Generation(text, seconds, new_tokens, looped))
    return results


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    citations: Sequence[int] | None = None,
    on_batch: Callable[[int], None] | None = None,
    copy_limit: int | None = MAX_COPIED_TOKENS,
    source_texts: Sequence[str] | None = None,
) -> list[Generation]:
    """Generate for many prompts, ``batch_size`` at a time; ``citations[i]`` = sources shown to prompt i,
    ``source_texts[i]`` their text (for :class:`StatedInheritance`).

    Prompts are batched in order of length (and the answers put back in input order), so a batch pads little:
    a short closed-book question never waits behind a long prompt with three sources.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        limits = [citations[i] for i in chunk] if citations is not None else None
        texts = [source_texts[i] for i in chunk] if source_texts is not None else None
        generated = generate_batch(model, tokenizer, spec, [prompts[i] for i in chunk], max_new_tokens=max_new_tokens,
                                   citations=limits, copy_limit=copy_limit, source_texts=texts)
        results.update(zip(chunk, generated, strict=True))
        if on_batch:
            on_batch(len(chunk))
    return [results[i] for i in range(len(prompts))]
