"""The clinic bot: one base model, many swappable LoRA adapters, cited answers.

Design choices, and why:

- **One base in memory, adapters as PEFT modules on it.** An adapter is a few MB, so any number can be
  resident; a request picks one by name (``adapter_names=`` in PEFT), which also lets one forward batch
  serve several specialties at once (:meth:`LLMService.answer_batch`).
- **Retrieval first, then generation.** The top-k sources go into the prompt numbered ``[1]..[k]``; the answer
  ends with exactly those sources, and any ``[n]`` the model invents outside 1..k is removed — a citation a
  reader cannot open is worse than none.
- **One lock around the model.** PEFT's per-request adapter selection works through forward hooks, so two
  generations must never overlap on one model; concurrency comes from batching, not from threads.
- **No question text in logs** unless ``service.log_questions`` is set: questions are patient data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medlora.config import MedloraConfig
from medlora.errors import MedloraError
from medlora.models.generation import generate_batch, shown_text
from medlora.models.loading import LoadedModel, load_from_config
from medlora.retrieval import SourceIndex
from medlora.service.adapter_pool import AdapterPool
from medlora.service.answers import Answer, CitationFilter, CitedSource, compose, source_note, sources_block
from medlora.service.limits import InputTooLargeError, PromptLimits
from medlora.service.merge import MERGED_MARKER, merge_adapter
from medlora.service.registry import (
    AUTO_NAME,
    BASE_NAME,
    AdapterInfo,
    AdapterNotFoundError,
    default_adapter_name,
    describe_adapter,
    directory_adapter_name,
    scan_adapters_dir,
)
from medlora.service.routing import RouteDecision, SpecialtyRouter, build_router
from medlora.service.streaming import PEFT_BASE, AnswerStream

log = logging.getLogger(__name__)


class LLMService:
    """Load the base and its adapters, route, retrieve, and answer (batched or streamed).

    ``index`` (a :class:`SourceIndex`) and ``router`` may be injected, mostly for tests; otherwise the default
    source index is built or loaded from the cache on :meth:`load_model`, and the router is trained from the
    loaded adapters' questions on the first ``adapter="auto"``.
    """

    def __init__(self, config: MedloraConfig, *, index: SourceIndex | None = None,
                 router: SpecialtyRouter | None = None) -> None:
        self.config = config
        self._pool = AdapterPool()
        self._lock = self._pool.lock  # guards the model: generation, adapter loading and unloading
        self._router_lock = threading.Lock()  # training the router must not block generation
        self._default = AUTO_NAME
        self._index = index
        self._index_ready = index is not None
        self._router = router
        self._router_fixed = router is not None
        self._router_stale = router is None

    # ------------------------------------------------------------------ model and adapters

    def load_model(self) -> None:
        """Load ``models.llm``: the base, the configured adapter, and every adapter under ``adapters_dir``.

        The configured adapter (``use_medical_adapter`` + ``adapter_path``) must load: a mismatch is an error.
        Adapters found by scanning are skipped with a logged reason when they cannot load (another base, pickle
        weights, extra tensors, a corrupt or truncated file), so one bad directory does not take the bot down.
        """
        llm = self.config.models.llm
        started = time.perf_counter()
        with self._lock:
            self._pool.reset(load_from_config(llm))
        configured: Path | None = None
        if llm.use_medical_adapter and llm.adapter_path:
            configured = Path(llm.adapter_path)
            if not configured.is_dir():
                found = ", ".join(str(p) for p in scan_adapters_dir(Path(llm.adapters_dir))) or "none"
                raise MedloraError(
                    f"models.llm.adapter_path: {configured}: adapter directory not found (adapters under "
                    f"{llm.adapters_dir}: {found}). Train it (`medlora train`), point adapter_path at one of those "
                    "(`make demo` writes data/models/lora-<specialty>-demo-adapter), or set "
                    "models.llm.use_medical_adapter: false to serve the adapters directory alone.")
            info = self.load_adapter(None, configured)
            self._default = info.name
        for path in scan_adapters_dir(Path(llm.adapters_dir)):
            if configured is not None and path.resolve() == configured.resolve():
                continue
            try:
                name = default_adapter_name(path)
                if name in self._pool.adapters:  # two adapters of one specialty: tell them apart by directory
                    name = directory_adapter_name(path)
                self.load_adapter(name, path)
            except MedloraError as err:
                log.warning("skipping adapter %s: %s", path.name, err)
            except Exception as err:  # noqa: BLE001 - a file no check foresaw must not stop the bot either
                log.warning("skipping adapter %s: %s: %s", path.name, type(err).__name__,
                            str(err).splitlines()[0][:200] if str(err) else "")
        self._ensure_index()
        log.info("loaded %s with adapters [%s] in %.1f s", self.loaded_model.source.base_model_id,
                 ", ".join(self._pool.adapters), time.perf_counter() - started)

    @property
    def loaded_model(self) -> LoadedModel:
        return self._pool.loaded_model

    @property
    def generation_model(self) -> Any:
        """The model to call ``generate`` on: the PEFT wrapper when adapters are loaded, else the base."""
        return self._pool.generation_model

    @property
    def has_adapters(self) -> bool:
        return self._pool.peft is not None

    @property
    def base_model_id(self) -> str:
        return self.loaded_model.source.base_model_id

    def load_adapter(self, name: str | None, path: str | Path) -> AdapterInfo:
        """Load the adapter at ``path`` as ``name`` (default: its specialty or directory name).

        Refuses a pickle-only adapter, an adapter of another base model, and a name already in use.
        """
        path = Path(path)
        info = describe_adapter(path, name)
        with self._lock:
            self._pool.add(info, path)
            self._router_stale = not self._router_fixed
        log.info("adapter %s loaded from %s", info.name, info.path)
        return info

    def unload_adapter(self, name: str) -> None:
        """Remove an adapter; the last one removed gives the plain base model back."""
        with self._lock:
            self._pool.remove(name)
            if self._default == name:
                self._default = AUTO_NAME
            self._router_stale = not self._router_fixed
        log.info("adapter %s unloaded", name)

    def set_adapter(self, name: str) -> None:
        """The adapter used when a request names none: an adapter, ``"auto"`` or ``"base"``."""
        self._pool.check_known(name)
        self._default = name
        self._pool.activate(name)

    @property
    def default_adapter(self) -> str:
        return self._default

    def list_adapters(self) -> list[AdapterInfo]:
        return list(self._pool.adapters.values())

    # ------------------------------------------------------------------ routing and retrieval

    @property
    def router(self) -> SpecialtyRouter | None:
        """The ``auto`` router, (re)trained from the loaded adapters' questions when they changed."""
        if self._router_stale:
            with self._router_lock:
                if self._router_stale:
                    self._router_stale = False  # set first: a load meanwhile marks it stale again
                    pairs = [(a.name, a.specialty or a.name) for a in list(self._pool.adapters.values())]
                    self._router = build_router(
                        pairs, threshold=self.config.service.routing_threshold,
                        prepared_dir_template=self.config.data.output_dir,
                    ) if pairs else None
        return self._router

    def resolve_adapters(self, questions: Sequence[str], adapters: Sequence[str | None]
                         ) -> list[tuple[str | None, RouteDecision | None]]:
        """Turn requested names (``None`` = the default, ``auto``, ``base``, an adapter) into adapters to run."""
        wanted = [a or self._default for a in adapters]
        for name in wanted:
            self._pool.check_known(name)
        auto = [i for i, name in enumerate(wanted) if name == AUTO_NAME]
        decisions: dict[int, RouteDecision] = {}
        router = self.router if auto and self._pool.adapters else None
        if router is not None:
            for i, decision in zip(auto, router.route_many([questions[i] for i in auto]), strict=True):
                decisions[i] = decision
        resolved: list[tuple[str | None, RouteDecision | None]] = []
        for i, name in enumerate(wanted):
            if name == AUTO_NAME:
                routed = decisions.get(i)
                chosen = routed.adapter if routed and routed.adapter in self._pool.adapters else None
                resolved.append((chosen, routed))
            else:
                resolved.append((None if name == BASE_NAME else name, None))
        return resolved

    def _ensure_index(self) -> SourceIndex | None:
        service = self.config.service
        if not service.retrieval or service.top_k_sources <= 0:
            return None
        if not self._index_ready:
            self._index_ready = True
            from medlora.retrieval import configured_index

            try:
                self._index = configured_index(self.config)
            except (MedloraError, ValueError, OSError) as err:
                log.warning("answers will have no sources: the source index could not be built (%s)", err)
        return self._index

    def retrieve(self, question: str) -> list[CitedSource]:
        index = self._ensure_index()
        if index is None:
            return []
        service = self.config.service
        hits = index.search(question, k=service.top_k_sources, min_title_match=service.min_source_match)
        return [CitedSource.from_retrieved(n, hit) for n, hit in enumerate(hits, start=1)]

    # ------------------------------------------------------------------ input limits

    @property
    def _limits(self) -> PromptLimits:
        return PromptLimits(self.loaded_model, self.config.service)

    def _prompt(self, question: str, sources: Sequence[CitedSource]) -> str:
        return self._limits.prompt(question, sources)

    def prompt_token_limit(self, max_new_tokens: int) -> int:
        """The most prompt tokens one request may use: the configured cap, and the context minus the answer."""
        return self._limits.token_limit(max_new_tokens)

    def check_question(self, question: str, max_new_tokens: int | None = None) -> None:
        """Refuse, cheaply and before any queueing, a question that is empty or cannot fit the prompt limit."""
        self._limits.check_question(question, max_new_tokens or self.config.service.max_new_tokens)

    def _fit_prompt(self, question: str, sources: list[CitedSource], max_new_tokens: int
                    ) -> tuple[str, list[CitedSource]]:
        """The prompt within the token limit: retrieved sources are dropped from the last until it fits."""
        return self._limits.fit(question, sources, max_new_tokens)

    # ------------------------------------------------------------------ answering

    def answer(self, question: str, adapter: str | None = None, *, max_new_tokens: int | None = None) -> Answer:
        """Answer one question with ``adapter`` (a name, ``"auto"``, ``"base"``; ``None`` = the default)."""
        return self.answer_batch([question], [adapter], max_new_tokens=max_new_tokens)[0]

    def answer_batch(self, questions: Sequence[str], adapters: Sequence[str | None] | None = None, *,
                     max_new_tokens: int | None = None) -> list[Answer]:
        """Answer several questions, each with its own adapter, in ONE generate call (PEFT mixed batch)."""
        if not questions:
            return []
        adapters = list(adapters) if adapters is not None else [None] * len(questions)
        if len(adapters) != len(questions):
            raise ValueError("give one adapter per question")
        budget = max_new_tokens or self.config.service.max_new_tokens
        for question in questions:
            self.check_question(question, budget)
        started = time.perf_counter()
        resolved = self.resolve_adapters(questions, adapters)
        fitted = [self._fit_prompt(q, self.retrieve(q), budget) for q in questions]
        sources = [found for _, found in fitted]
        retrieval_s = (time.perf_counter() - started) / len(questions)
        prompts = [prompt for prompt, _ in fitted]
        self._log_questions(questions)
        with self._lock:
            loaded = self.loaded_model
            self._check_still_loaded(name for name, _ in resolved)
            names = [name or PEFT_BASE for name, _ in resolved] if self.has_adapters else None
            began = time.perf_counter()
            generations = generate_batch(self.generation_model, loaded.tokenizer, loaded.spec, prompts,
                                         max_new_tokens=budget, adapter_names=names,
                                         citations=[len(found) for found in sources],
                                         source_texts=[shown_text(found) for found in sources])
            generation_s = time.perf_counter() - began
        total = time.perf_counter() - started
        answers = []
        searched = self._ensure_index() is not None
        for (name, decision), found, gen in zip(resolved, sources, generations, strict=True):
            body = CitationFilter(len(found)).apply(gen.text).strip()
            note = source_note(searched, found)
            answers.append(Answer(
                text=compose(body, found, note), body=body, sources=found, adapter=name or BASE_NAME, route=decision,
                note=note,
                timings={"retrieval_s": round(retrieval_s, 4), "generation_s": round(generation_s, 4),
                         "total_s": round(total, 4), "new_tokens": gen.new_tokens,
                         "batch_size": len(questions)},
            ))
        self._log_answered(len(questions), [a.adapter for a in answers], total)
        return answers

    def stream(self, question: str, adapter: str | None = None, *,
               max_new_tokens: int | None = None) -> AnswerStream:
        """Start a streamed answer: iterate the result for text pieces, then read ``.answer``."""
        budget = max_new_tokens or self.config.service.max_new_tokens
        self.check_question(question, budget)
        started = time.perf_counter()
        (name, decision), = self.resolve_adapters([question], [adapter])
        prompt, sources = self._fit_prompt(question, self.retrieve(question), budget)
        retrieval_s = time.perf_counter() - started
        self._log_questions([question])
        return AnswerStream(self, prompt, name, decision, sources, budget, started, retrieval_s,
                            note=source_note(self._ensure_index() is not None, sources))

    def _check_still_loaded(self, names: Iterable[str | None]) -> None:
        """Called under the lock: an adapter may have been unloaded between routing and generating."""
        self._pool.check_still_loaded(names)

    def _log_questions(self, questions: Sequence[str]) -> None:
        if self.config.service.log_questions:
            for question in questions:
                log.info("question: %r", question)

    def _log_answered(self, count: int, adapters: Sequence[str], seconds: float) -> None:
        # Counts, adapters and timings only: never the question or answer text.
        log.info("answered %d question(s) with [%s] in %.2f s", count, ", ".join(adapters), seconds)

    # ------------------------------------------------------------------ merging

    def merge(self, name: str, out_dir: str | Path) -> Path:
        """Write base + adapter ``name`` merged into plain transformers weights (no PEFT needed to load).

        See :func:`medlora.service.merge.merge_adapter`.
        """
        if name not in self._pool.adapters:
            raise AdapterNotFoundError(self._pool.unknown(name))
        return merge_adapter(self.config.models.llm, self._pool.adapters[name], self.base_model_id, out_dir)


__all__ = [
    "MERGED_MARKER", "Answer", "AnswerStream", "CitationFilter", "CitedSource", "InputTooLargeError", "LLMService",
    "sources_block",
]
