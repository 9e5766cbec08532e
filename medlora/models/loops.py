"""What a looping answer is, defined once for the loop stop in decoding and for the loop metric.

An answer loops when it says a sentence of at least ``MIN_SENTENCE_WORDS`` words twice, or any
``LOOP_WORD_NGRAM`` consecutive words twice. :func:`cut_repetition` keeps an answer up to where its first
repetition starts, so the reader gets each statement once.
"""

from __future__ import annotations

import re
import unicodedata

LOOP_WORD_NGRAM = 8
MIN_SENTENCE_WORDS = 4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def _norm(word: str) -> str:
    return unicodedata.normalize("NFKD", word).casefold()


def first_repeat(text: str, n: int = LOOP_WORD_NGRAM) -> int | None:
    """Character offset where the first repeated sentence or ``n``-word run starts again, else ``None``."""
    cut: int | None = None
    seen_sentences: set[tuple[str, ...]] = set()
    start = 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        end = match.start() if match else len(text)
        words = tuple(_norm(w) for w in _WORD.findall(text[start:end]))
        if len(words) >= MIN_SENTENCE_WORDS:
            if words in seen_sentences:
                cut = start
                break
            seen_sentences.add(words)
        if match:
            start = match.end()
    matches = list(_WORD.finditer(text))
    seen: set[tuple[str, ...]] = set()
    for i in range(len(matches) - n + 1):
        gram = tuple(_norm(w.group()) for w in matches[i : i + n])
        if gram in seen:
            offset = matches[i].start()  # the second copy of the run starts here
            cut = offset if cut is None else min(cut, offset)
            break
        seen.add(gram)
    return cut


def is_looping(text: str, n: int = LOOP_WORD_NGRAM) -> bool:
    return first_repeat(text, n) is not None


def cut_repetition(text: str) -> tuple[str, bool]:
    """``text`` up to its first repetition (trailing separators stripped), and whether anything was cut."""
    cut = first_repeat(text)
    if cut is None:
        return text, False
    return text[:cut].rstrip(" ,;:-"), True


class RepetitionGuard:
    """:func:`cut_repetition` for a stream: text flows through until the first repeat is found, then stops.

    Nothing is held back (the first words reach the reader at once), so a looping streamed answer keeps the
    few words of the repeat that were sent before it was recognised (at most ``LOOP_WORD_NGRAM - 1`` words,
    or one short sentence) where the batched answer is cut exactly. :attr:`done` turns true at the repeat.
    """

    HOLD_WORDS = 0

    def __init__(self) -> None:
        self.raw = ""
        self.emitted = 0
        self.done = False

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        self.raw += piece
        text, cut = cut_repetition(self.raw)
        if cut:
            self.done = True
            return self._emit(len(text), text)
        words = list(_WORD.finditer(self.raw))
        limit = words[-self.HOLD_WORDS].start() if self.HOLD_WORDS and len(words) > self.HOLD_WORDS else len(self.raw)
        return self._emit(limit, self.raw)

    def finish(self) -> str:
        text, _ = cut_repetition(self.raw)
        return self._emit(len(text), text)

    def _emit(self, limit: int, text: str) -> str:
        if limit <= self.emitted:
            return ""
        out, self.emitted = text[self.emitted : limit], limit
        return out
