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
    words = list(_WORD.finditer(text))
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(_norm(w.group()) for w in words[i : i + n])
        if gram in seen:
            offset = words[i].start()  # the second copy of the run starts here
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
