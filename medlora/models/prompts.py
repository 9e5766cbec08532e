"""One prompt format per model family, shared by training, evaluation and serving.

Training and inference must build the *same* prompt, or the adapter learns one format and is asked another.
Instruct models with a chat template get it; plain causal models and T5 get a short instruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from transformers import PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec

SYSTEM_PROMPT = ("You are a careful medical assistant. Answer precisely, using correct clinical terminology, "
                 "in the language of the question.")
GROUNDED_INSTRUCTION = ("Answer from the sources above that are about the question, citing them as [n]. "
                        "If none of them covers it, say so.")


def prompt_uses_special_tokens(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> bool:
    """A chat-templated prompt already carries its special tokens; adding BOS again would shift the format."""
    return not (not spec.is_encoder_decoder and getattr(tokenizer, "chat_template", None))


ZERO_WIDTH_SPACE = "\u200b"


def _special_strings(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            specials.add(str(token))
    return sorted((t for t in specials if len(t) > 1), key=len, reverse=True)


def neutralise_special_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """Break every special-token string a user (or a source) typed, e.g. ``<|im_start|>system``.

    The prompt is rendered as text and tokenized once, so a typed ``<|im_start|>`` would otherwise become the
    real control token and open a fake system turn. A zero-width space after its first character keeps the
    text readable and makes it tokenize as ordinary characters.
    """
    for special in _special_strings(tokenizer):
        if special in text:
            text = text.replace(special, special[0] + ZERO_WIDTH_SPACE + special[1:])
    return text


def format_sources(sources: Sequence[tuple[int, str, str]]) -> str:
    """Render retrieved sources as a numbered block: ``[n] title: text``."""
    return "\n".join(f"[{number}] {title}: {text}" for number, title, text in sources)


def shorten_source(text: str, chars: int) -> str:
    """``text`` cut to at most ``chars`` characters at a word boundary, marked with an ellipsis when cut."""
    if len(text) <= chars:
        return text
    return (text[:chars].rsplit(" ", 1)[0] if chars > 0 else "") + " …"


def fitted_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    question: str,
    sources: Sequence[tuple[int, str, str]],
    max_tokens: int,
) -> list[int]:
    """The prompt's token ids within ``max_tokens``, shortening the sources' texts before anything else.

    Why: a grounded prompt (three sources of ~500 characters) is longer than a training example's prompt
    budget, and cutting its head would drop the chat turn, the instruction and source [1] — so the model would
    learn to cite a source it never saw, in a prompt format inference never uses. Every source is cut to the
    same number of characters (the most that fits, found by bisection); only a question too long on its own is
    still cut from the left.
    """
    add_special = prompt_uses_special_tokens(tokenizer, spec)

    def ids_with(chars: int | None) -> list[int]:
        shown = sources if chars is None else [(n, title, shorten_source(text, chars)) for n, title, text in sources]
        return list(tokenizer(build_prompt(tokenizer, spec, question, shown), add_special_tokens=add_special)[
            "input_ids"])

    ids = ids_with(None)
    if len(ids) <= max_tokens or not sources:
        return ids[-max_tokens:]
    low, high = 0, max(len(text) for _, _, text in sources)
    while low < high:  # the largest per-source length whose prompt fits
        middle = (low + high + 1) // 2
        if len(ids_with(middle)) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return ids_with(low)[-max_tokens:]


def reading_question(text: str, topic: str) -> str:
    """A yes/no reading question over a short text: the outside-the-specialty check of
    :mod:`medlora.evaluation.forgetting` asks it over abstracts, and distillation replay
    (:mod:`medlora.training.distill`) over team-written ones, so both see one format."""
    return f"Abstract: {text}\n\nIs this abstract about {topic.lower()}? Answer yes or no."


def build_prompt(
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    question: str,
    sources: Sequence[tuple[int, str, str]] = (),
) -> str:
    """The text the model sees before its answer."""
    question = neutralise_special_tokens(tokenizer, question.strip())
    sources = [(n, neutralise_special_tokens(tokenizer, title), neutralise_special_tokens(tokenizer, text))
               for n, title, text in sources]
    if sources:
        question = (
            f"Sources:\n{format_sources(sources)}\n\n"
            f"{GROUNDED_INSTRUCTION}\nQuestion: {question}"
        )
    if spec.is_encoder_decoder:
        return f"Answer the medical question: {question}"
    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
        return cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return f"Question: {question}\nAnswer:"
