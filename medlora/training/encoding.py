"""Turn records into token ids with the loss on answer tokens only.

The prompt is built by :func:`medlora.models.prompts.build_prompt`, the same function inference uses, so the
adapter is trained on exactly the format it will be asked in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from medlora.data.inheritance import asks_inheritance, inheritance_patterns
from medlora.data.records import QARecord
from medlora.models.architecture import ModelSpec
from medlora.models.prompts import fitted_prompt_ids
from medlora.retrieval import Source, SourceIndex, document_key, sources_from_records
from medlora.retrieval.index import names_title, title_words
from medlora.retrieval.translate import expand_query
from medlora.retrieval.relevance import about_condition

IGNORE_INDEX = -100  # positions the loss skips (prompt and padding)


def encode_record(
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    question: str,
    answer: str,
    max_length: int,
    sources: Sequence[tuple[int, str, str]] = (),
) -> dict[str, list[int]]:
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if spec.is_encoder_decoder:
        prompt_ids = fitted_prompt_ids(tokenizer, spec, question, sources, max_length)
        labels = answer_ids[: max_length - 1] + [eos]
        return {"input_ids": prompt_ids, "attention_mask": [1] * len(prompt_ids), "labels": labels}
    # Decoder-only: a grounded prompt may take most of the budget, but never the answer's first third; the
    # sources are shortened to fit, so the prompt keeps the format inference uses.
    prompt_ids = fitted_prompt_ids(tokenizer, spec, question, sources, max_length - max_length // 3)
    answer_ids = (answer_ids + [eos])[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


_FIRST_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])(?=\s+[A-Z])")
NOT_COVERED = "The sources above do not cover this question; from general medical knowledge:"


_COMMON_OPENERS = frozenset({"a", "an", "the", "this", "these", "those", "it", "its", "they", "there", "in", "most",
                             "some", "many", "people", "treatment", "symptoms", "signs", "yes", "no"})


def cite_in_answer(answer: str, number: int, style: str = "sentence") -> str:
    """Cite ``[number]`` where a grounded answer cites it.

    ``sentence``: after the answer's first sentence (or at its end). ``lead``: "According to [n], ..." — the
    citation is the answer's first decision, which a small model learns from far fewer examples than a marker
    in the middle of a sentence it is busy copying.
    """
    if style == "lead":
        first, _, rest = answer.partition(" ")
        if first.lower() in _COMMON_OPENERS:
            first = first.lower()
        return f"According to [{number}], {first} {rest}".rstrip()
    match = _FIRST_SENTENCE_END.search(answer)
    if match is None:
        return f"{answer} [{number}]"
    return f"{answer[: match.start() - 1]} [{number}]{answer[match.start() - 1 :]}"


@dataclass(frozen=True)
class Grounding:
    """How training examples carry sources (RAFT-style): see :func:`grounded_rows`."""

    fraction: float = 0.0  # share of examples shown with k retrieved sources
    distractor_only: float = 0.0  # of those, the share shown no source on their disease
    related_only: float = 0.0  # of the rest, the share shown another document on their disease, not their own
    top_k: int = 3
    citation_style: str = "sentence"  # where the target cites: see cite_in_answer
    # A source to cite whose text already holds more than this share of the target's words is not used: the
    # row would teach copying the source, which open-book use never rewards (the question's own page is never
    # in the index there). 1.0 keeps every source; below 1.0 the record's own passage is never cited either.
    max_source_overlap: float = 1.0
    # "retrieval": sources in the order the search ranks them, as inference shows them — a model that cannot
    # yet tell a supporting source from a look-alike learns where the supporting one usually is (first) instead
    # of a uniform guess. The record's own passage (which the index would rank first) leads. "shuffled": random.
    source_order: str = "shuffled"
    # > 0: show a row only the sources the bot would show for its question (config
    # service.min_source_match): look-alikes whose title the question names, so 1-3 sources or none, as at
    # inference. 0: always top_k sources.
    min_title_match: float = 0.0


_WORD = re.compile(r"[a-z0-9]{3,}")


def source_overlap(answer: str, text: str) -> float:
    """The share of ``answer``'s distinct words (3+ letters, case folded) that ``text`` contains."""
    words = set(_WORD.findall(answer.lower()))
    return len(words & set(_WORD.findall(text.lower()))) / len(words) if words else 0.0


Row = tuple[QARecord, list[tuple[int, str, str]], str]


def grounded_rows(
    records: Sequence[QARecord],
    grounding: Grounding,
    seed: int,
    index: SourceIndex | None = None,
    mask: np.ndarray | None = None,
) -> list[Row]:
    """Rows ``(record, sources, target)``, seeded, in the bot's prompt format.

    A grounded row shows ``top_k`` numbered sources that BM25 retrieves for the question from ``index`` (never
    a passage ``mask`` removes: validation and test diseases), in one of three kinds:

    - *distractors only* (``distractor_only``): hard negatives, none on the record's disease; the target says
      the sources do not cover the question before answering, so the model learns to tell a supporting source
      from a look-alike;
    - *related* (``related_only``): another document on the same disease (an HPO annotation, another MedQuAD
      site) among distractors, cited as ``[n]`` — exactly what open-book use looks like, where the question's
      own page is not in the index;
    - *oracle*: the record's own passage among distractors, cited as ``[n]`` (the knowledge-base case).

    A source is cited only if it states the answer's checkable fact (:func:`states_answer_fact`); when every
    related one is silent on it and the record's own passage is not citable, the row shows one among distractors
    and its target says the sources do not cover the question.

    With ``max_source_overlap`` below 1, a source that nearly repeats the target is never the one cited; a row
    left with none becomes closed-book. Without an index, distractors are other records of the training set.
    The rest are closed-book rows. The shown sources are in a random order, or with ``source_order`` =
    "retrieval" in the search's ranking, as inference shows them.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    for record in records:
        if grounding.fraction <= 0 or rng.random() >= grounding.fraction:
            rows.append((record, [], record.answer))
            continue
        related, distractors, ranks = _retrieved(record, records, grounding.top_k, rng, index, mask,
                                                 grounding.min_title_match)
        own = [source for source, _ in sources_from_records([record], "train")]
        if grounding.min_title_match > 0:  # the bot shows the record's own page only if the question names it
            asked = title_words(expand_query(record.question))
            own = [s for s in own if names_title(asked, s.title, grounding.min_title_match)]
        if not distractors and (grounding.min_title_match <= 0 or not (own or related)):
            rows.append((record, [], record.answer))
            continue
        # The own passage's snippet can stop before the sentence that states the fact: then it is not cited either.
        own = [s for s in own if states_answer_fact(record, s)]
        unsupported = [s for s in related if not states_answer_fact(record, s)]
        related = [s for s in related if states_answer_fact(record, s)]
        kind = rng.random()
        if (kind < grounding.distractor_only and distractors) or not (own or related or unsupported):
            rows.append((record, _numbered(distractors[: grounding.top_k]), f"{NOT_COVERED} {record.answer}"))
            continue
        if grounding.max_source_overlap < 1.0:
            own, related = (
                [s for s in found if source_overlap(record.answer, s.text) <= grounding.max_source_overlap]
                for found in (own, related))
        if not (own or related):
            if unsupported:  # on the disease but silent on (or contrary to) the asked fact: shown, not cited
                shown = _arranged([*distractors[: grounding.top_k - 1], unsupported[0]], rng, grounding, ranks)
                rows.append((record, _numbered(shown), f"{NOT_COVERED} {record.answer}"))
            else:
                rows.append((record, [], record.answer))
            continue
        use_related = bool(related) and (not own or rng.random() < grounding.related_only)
        cited = related[0] if use_related else own[0]
        # The own passage is not a search hit: it leads, as it would.
        shown = _arranged([*distractors[: grounding.top_k - 1], cited], rng, grounding, ranks,
                          lead=None if use_related else cited)
        rows.append((record, _numbered(shown),
                     cite_in_answer(record.answer, shown.index(cited) + 1, grounding.citation_style)))
    return rows


def _arranged(shown: list[Source], rng: random.Random, grounding: Grounding, ranks: dict[str, int],
              lead: Source | None = None) -> list[Source]:
    """``shown`` in the row's source order: shuffled, or in the search's ranking with ``lead`` first. The shuffle
    is drawn in both orders, so switching the order changes nothing else of the row."""
    rng.shuffle(shown)
    if grounding.source_order != "retrieval":
        return shown
    return sorted(shown, key=lambda s: -1 if s is lead else ranks[s.source_id])


def states_answer_fact(record: QARecord, source: Source) -> bool:
    """Whether ``source`` can be cited for ``record``'s answer as far as a fact checkable without a judge goes:
    for an inheritance question whose answer names a pattern, the source must name one of its patterns.

    A target "According to [1], X is inherited in an autosomal recessive pattern" beside a source [1] that
    names no pattern taught the model to cite a pattern its sources do not state, and it then stated the
    commonest one (autosomal dominant) wherever its sources were silent.
    """
    if not asks_inheritance(record.question):
        return True
    wanted = inheritance_patterns(record.answer)
    return not wanted or bool(wanted & inheritance_patterns(source.text))


def _numbered(sources: Sequence[Source]) -> list[tuple[int, str, str]]:
    return [(n, s.title, s.text) for n, s in enumerate(sources, start=1)]


def _retrieved(record: QARecord, records: Sequence[QARecord], k: int, rng: random.Random,
               index: SourceIndex | None, mask: np.ndarray | None, min_title_match: float = 0.0,
               ) -> tuple[list[Source], list[Source], dict[str, int]]:
    """``(related, distractors, ranks)``: other documents on the record's disease, up to ``k`` sources that look
    relevant to it but are not about its disease, and each one's rank in the search (0 = best). The record's
    own document is in neither. ``min_title_match`` keeps only what the bot would show for the question."""
    own_document = document_key(record)

    def same_disease(source: Source) -> bool:
        return about_condition(source, record.focus, record.synonyms, record.cuis)

    if index is not None:
        hits = [h.source for h in index.search(record.question, 4 * k, mask=mask, min_title_match=min_title_match)
                if h.source.document != own_document]
        ranks = {s.source_id: rank for rank, s in enumerate(hits)}
        return [s for s in hits if same_disease(s)], [s for s in hits if not same_disease(s)][:k], ranks
    pool = [o for o in rng.sample(list(records), min(len(records), 4 * k)) if o.split_group() != record.split_group()]
    found = [s for s, _ in sources_from_records(pool, "train") if not same_disease(s)][:k]
    return [], found, {s.source_id: rank for rank, s in enumerate(found)}


def build_dataset(
    records: Sequence[QARecord],
    tokenizer: PreTrainedTokenizerBase,
    spec: ModelSpec,
    max_length: int,
    grounding: Grounding = Grounding(),
    seed: int = 0,
    *,
    index: SourceIndex | None = None,
    mask: np.ndarray | None = None,
) -> Dataset:
    rows: list[dict[str, Any]] = [
        {"question": r.question, "answer": answer,
         "sources": [{"number": n, "title": title, "text": text} for n, title, text in sources]}
        for r, sources, answer in grounded_rows(records, grounding, seed, index, mask)
    ]
    dataset = Dataset.from_list(rows)
    return dataset.map(
        lambda row: encode_record(tokenizer, spec, row["question"], row["answer"], max_length,
                                  [(s["number"], s["title"], s["text"]) for s in row["sources"] or []]),
        remove_columns=["question", "answer", "sources"],
        desc="Tokenizing",
    )
