"""One prompt format per model family, shared by training, evaluation and serving.

Training and inference must build the *same* prompt, or the adapter learns one format and is asked another.
Instruct models with a chat template get it; plain causal models and T5 get a short instruction.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from medlora.models.architecture import ModelSpec

SYSTEM_PROMPT = "You are a careful medical assistant. Answer precisely, using correct clinical terminology."


def format_sources(sources: Sequence[tuple[int, str, str]]) -> str:
    """Render retrieved sources as a numbered block: ``[n] title: text``."""
    return "\n".join(f"[{number}] {title}: {text}" for number, title, text in sources)


def build_prompt(
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    question: str,
    sources: Sequence[tuple[int, str, str]] = (),
) -> str:
    """The text the model sees before its answer."""
    question = question.strip()
    if sources:
        question = (
            f"Sources:\n{format_sources(sources)}\n\n"
            f"Using the sources above and citing them as [n], answer: {question}"
        )
    if spec.is_encoder_decoder:
        return f"Answer the medical question: {question}"
    if getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"Question: {question}\nAnswer:"
