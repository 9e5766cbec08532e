"""Streamed answers: generation in a worker thread, text handed to the reader piece by piece, cancellable."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import StoppingCriteria, TextIteratorStreamer

from medlora.models.generation import MAX_COPIED_TOKENS, answer_ids, decoding_kwargs, shown_text
from medlora.models.loops import RepetitionGuard
from medlora.models.prompts import prompt_uses_special_tokens
from medlora.service.answers import Answer, CitationFilter, CitedSource, compose
from medlora.service.registry import BASE_NAME
from medlora.service.routing import RouteDecision

if TYPE_CHECKING:
    from medlora.service.llm_service import LLMService

PEFT_BASE = "__base__"  # PEFT's name for "no adapter" inside a mixed ``adapter_names`` batch


class _Cancelled(StoppingCriteria):
    """Stops a streamed generation when its reader went away (a closed browser tab)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
        return cast(torch.BoolTensor, done)


class AnswerStream:
    """Iterate to get the answer's text as it is generated; :attr:`answer` is the finished :class:`Answer`.

    ``adapter`` and ``sources`` are known before the first token, so a UI can show them early.
    """

    def __init__(self, service: LLMService, prompt: str, adapter: str | None, route: RouteDecision | None,
                 sources: list[CitedSource], max_new_tokens: int, started: float, retrieval_s: float,
                 note: str = "") -> None:
        self._service = service
        self._prompt = prompt
        self._peft_adapter = adapter
        self.adapter = adapter or BASE_NAME
        self.route = route
        self.sources = sources
        self.note = note
        self._max_new_tokens = max_new_tokens
        self._started = started
        self._retrieval_s = retrieval_s
        self._cancel = threading.Event()
        self.answer: Answer | None = None

    def cancel(self) -> None:
        self._cancel.set()

    def __iter__(self) -> Iterator[str]:
        service = self._service
        loaded = service.loaded_model
        tokenizer = loaded.tokenizer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []
        counts = {"new_tokens": 0, "generation_s": 0.0}

        def run() -> None:
            try:
                with service._lock:
                    service._check_still_loaded([self._peft_adapter])
                    model = service.generation_model
                    add_special = prompt_uses_special_tokens(tokenizer, loaded.spec)
                    inputs = tokenizer([self._prompt], return_tensors="pt", add_special_tokens=add_special)
                    inputs = inputs.to(next(model.parameters()).device)
                    kwargs: dict[str, Any] = {}
                    if service.has_adapters:
                        kwargs["adapter_names"] = [self._peft_adapter or PEFT_BASE]
                    began = time.perf_counter()
                    prompt_len = 0 if loaded.spec.is_encoder_decoder else inputs["input_ids"].shape[1]
                    copied = inputs["input_ids"].tolist() if MAX_COPIED_TOKENS is not None else None
                    decoding = decoding_kwargs(tokenizer, prompt_len, self._max_new_tokens,
                                               citations=len(self.sources) if self.sources else None,
                                               extra_stops=[_Cancelled(self._cancel)],
                                               prompts=copied,
                                               source_texts=[shown_text(self.sources)] if self.sources else None)
                    with torch.inference_mode():
                        output = model.generate(**inputs, **decoding, streamer=streamer, **kwargs)
                    counts["generation_s"] = time.perf_counter() - began
                    # Counted as the batch path counts them (EOS and padding excluded), so both paths give
                    # the same finish_reason for the same answer.
                    row = output[0, prompt_len:].tolist()
                    counts["new_tokens"] = len(answer_ids(tokenizer, model, loaded.spec, row))
            except BaseException as err:  # noqa: BLE001 - re-raised in the reader's thread below
                errors.append(err)
                streamer.end()

        worker = threading.Thread(target=run, name="medlora-stream", daemon=True)
        worker.start()
        citations = CitationFilter(len(self.sources))
        pieces: list[str] = []
        pending = ""  # whitespace held back: the finished answer is stripped, so the stream must be too
        try:
            guard = RepetitionGuard()  # the loop cut of the batch path, applied as the text streams
            for piece in itertools.chain(streamer, [None]):
                if piece is not None:
                    piece = guard.feed(piece)
                    if guard.done:
                        self._cancel.set()  # a repeat started: stop generating
                text = pending + (citations.feed(piece) if piece is not None
                                  else citations.feed(guard.finish()) + citations.flush())
                if not pieces:
                    text = text.lstrip()
                stripped = text.rstrip()
                pending = text[len(stripped):]
                if stripped:
                    pieces.append(stripped)
                    yield stripped
        finally:
            if worker.is_alive() and not errors:
                # The reader stopped early (GeneratorExit): stop generating and free the model.
                self._cancel.set()
            worker.join()
        if errors:
            raise errors[0]
        body = "".join(pieces)
        total = time.perf_counter() - self._started
        self.answer = Answer(
            text=compose(body, self.sources, self.note), body=body, sources=self.sources, adapter=self.adapter,
            route=self.route, note=self.note,
            timings={"retrieval_s": round(self._retrieval_s, 4), "generation_s": round(counts["generation_s"], 4),
                     "total_s": round(total, 4), "new_tokens": counts["new_tokens"], "batch_size": 1},
        )
        service._log_answered(1, [self.adapter], total)


# ------------------------------------------------------------------------------------------------ service
