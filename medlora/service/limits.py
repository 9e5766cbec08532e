"""How big a question and its prompt may be: refused early with a clear message, or fitted by dropping sources."""

from __future__ import annotations

from collections.abc import Sequence

from medlora.config import ServiceConfig
from medlora.errors import MedloraError
from medlora.models.loading import LoadedModel
from medlora.models.prompts import build_prompt, prompt_uses_special_tokens
from medlora.service.answers import CitedSource


class InputTooLargeError(MedloraError):
    """A question longer than the limits (characters, or prompt tokens within the model's context)."""


class PromptLimits:
    """The prompts of one loaded model under ``service``'s limits."""

    def __init__(self, loaded: LoadedModel, service: ServiceConfig) -> None:
        self.loaded = loaded
        self.service = service

    def prompt(self, question: str, sources: Sequence[CitedSource]) -> str:
        return build_prompt(self.loaded.tokenizer, self.loaded.spec, question,
                            sources=[(s.number, s.title, s.text) for s in sources])

    def token_limit(self, max_new_tokens: int) -> int:
        """The most prompt tokens one request may use: the configured cap, and the context minus the answer."""
        limit = self.service.max_prompt_tokens
        context = context_length(self.loaded)
        if context is not None:
            limit = min(limit, context - max_new_tokens)
        if limit <= 0:
            raise InputTooLargeError(f"max_tokens {max_new_tokens} leaves no room for a prompt in the model's "
                                     f"context of {context} tokens; ask for fewer tokens")
        return limit

    def count_tokens(self, prompt: str) -> int:
        add_special = prompt_uses_special_tokens(self.loaded.tokenizer, self.loaded.spec)
        return len(self.loaded.tokenizer(prompt, add_special_tokens=add_special)["input_ids"])

    def check_question(self, question: str, max_new_tokens: int) -> None:
        """Refuse, cheaply and before any queueing, a question that is empty or cannot fit the prompt limit.

        The character cap runs first so a huge text is never tokenized; the token check uses the prompt
        without sources (sources are dropped to fit, the question itself cannot be).
        """
        if not isinstance(question, str) or not question.strip():
            raise MedloraError("the question is empty")
        limit_chars = self.service.max_message_chars
        if len(question) > limit_chars:
            raise InputTooLargeError(f"the question has {len(question)} characters; at most {limit_chars} are "
                                     "accepted (service.max_message_chars): shorten it")
        limit = self.token_limit(max_new_tokens)
        tokens = self.count_tokens(self.prompt(question, []))
        if tokens > limit:
            raise InputTooLargeError(f"the question makes a prompt of {tokens} tokens; at most {limit} fit "
                                     f"(service.max_prompt_tokens, and the context minus {max_new_tokens} answer "
                                     "tokens): shorten it")

    def fit(self, question: str, sources: list[CitedSource], max_new_tokens: int) -> tuple[str, list[CitedSource]]:
        """The prompt within the token limit: retrieved sources are dropped from the last until it fits."""
        limit = self.token_limit(max_new_tokens)
        while True:
            prompt = self.prompt(question, sources)
            tokens = self.count_tokens(prompt)
            if tokens <= limit:
                return prompt, sources
            if not sources:
                raise InputTooLargeError(f"the question makes a prompt of {tokens} tokens; at most {limit} fit: "
                                         "shorten it")
            sources = sources[:-1]


def context_length(loaded: LoadedModel) -> int | None:
    """The model's context window in tokens, when its config states one (T5's relative positions do not)."""
    if loaded.spec.is_encoder_decoder:
        return None
    config = loaded.model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
