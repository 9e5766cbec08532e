"""What an answer is: its numbered sources, the filter that keeps only citations a reader can open, the text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medlora import MEDICAL_DISCLAIMER
from medlora.citations import LIST_MARKER_SEPARATORS, MAX_MARKER_LENGTH, list_marker_numbers
from medlora.retrieval import Retrieved
from medlora.service.registry import BASE_NAME
from medlora.service.routing import RouteDecision

# --------------------------------------------------------------------------------------------- citations

@dataclass(frozen=True)
class CitedSource:
    """A retrieved source as a reader sees it: its number in the prompt, title, link and snippet."""

    number: int
    title: str
    url: str
    text: str
    source_id: str
    corpus: str
    license: str
    score: float

    @classmethod
    def from_retrieved(cls, number: int, retrieved: Retrieved) -> CitedSource:
        source = retrieved.source
        return cls(number, source.title, source.url, source.text, source.source_id, source.corpus,
                   source.license, round(retrieved.score, 4))

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "title": self.title, "url": self.url, "text": self.text,
            "source_id": self.source_id, "corpus": self.corpus, "license": self.license, "score": self.score,
        }


# Said when the bot searched its sources and showed none (service.min_source_match): the answer is then the
# model's alone, and the reader should know it is not grounded in a source.
NO_SOURCE_NOTE = "No source in the knowledge base matched this question: this answer cites none."


def sources_block(sources: Sequence[CitedSource]) -> str:
    """The numbered ``Sources:`` list that ends a cited answer; empty when nothing was retrieved."""
    if not sources:
        return ""
    lines = ["Sources:"]
    lines += [f"[{s.number}] {s.title}" + (f" — {s.url}" if s.url else "") for s in sources]
    return "\n".join(lines)


class CitationFilter:
    """Drop ``[n]`` markers whose numbers were not retrieved (outside 1..``count``), piece by piece.

    ``feed`` returns the text safe to show now and holds back an unfinished ``[...``; ``flush`` returns what is
    still held at the end. Feeding token by token gives the same text as :meth:`apply` on the whole answer,
    so streamed and non-streamed answers agree.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._held = ""

    def _resolve(self, marker: str) -> str:
        numbers = list_marker_numbers(marker)
        if numbers is None:
            return marker
        kept = list(dict.fromkeys(n for n in numbers if 1 <= n <= self.count))
        if kept == numbers:
            return marker
        return "".join(f"[{n}]" for n in kept)

    def feed(self, text: str) -> str:
        out: list[str] = []
        for char in text:
            if not self._held:
                if char == "[":
                    self._held = "["
                else:
                    out.append(char)
                continue
            self._held += char
            if char == "]":
                out.append(self._resolve(self._held))
                self._held = ""
            elif char == "[":  # a new bracket: the old one was plain text
                out.append(self._held[:-1])
                self._held = "["
            elif not (char.isdigit() or char in LIST_MARKER_SEPARATORS) or len(self._held) > MAX_MARKER_LENGTH:
                out.append(self._held)
                self._held = ""
        return "".join(out)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def apply(self, text: str) -> str:
        return self.feed(text) + self.flush()


# ------------------------------------------------------------------------------------------------ answers


@dataclass
class Answer:
    """A finished answer. ``text`` is ``body`` followed by the numbered ``Sources:`` list."""

    text: str
    sources: list[CitedSource]
    adapter: str  # the adapter that answered, or "base"
    timings: dict[str, float]
    disclaimer: str = MEDICAL_DISCLAIMER
    body: str = ""
    route: RouteDecision | None = None  # set when adapter="auto" chose
    note: str = ""  # NO_SOURCE_NOTE when sources were searched and none was shown

    @property
    def full_text(self) -> str:
        """What a plain chat client shows: answer, sources and the disclaimer."""
        return f"{self.text}\n\n{self.disclaimer}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text, "body": self.body, "adapter": self.adapter, "timings": self.timings,
            "disclaimer": self.disclaimer, "sources": [s.to_json() for s in self.sources],
        }
        if self.route is not None:
            data["route"] = {"adapter": self.route.adapter or BASE_NAME, "probability": self.route.probability}
        if self.note:
            data["note"] = self.note
        return data


def source_note(searched: bool, sources: Sequence[CitedSource]) -> str:
    """:data:`NO_SOURCE_NOTE` when the sources were searched and none is shown, else ""."""
    return NO_SOURCE_NOTE if searched and not sources else ""


def compose(body: str, sources: list[CitedSource], note: str = "") -> str:
    """The answer's text: its body followed by the numbered ``Sources:`` list (or ``note`` when there is none)."""
    block = sources_block(sources) or note
    if not block:
        return body
    return f"{body}\n\n{block}" if body else block
