"""The citation grammar: how an answer cites its numbered sources, ``[1]``, ``[1, 3]``, ``[2-4]``.

Two readers use it, and they accept different things on purpose:

- the service's filter (:class:`medlora.service.answers.CitationFilter`) rewrites only *list markers*: a whole
  bracket holding numbers separated by ``,`` or ``;`` (:func:`list_marker_numbers`). A range or a bracket
  with words is left as the model wrote it.
- the citation metrics find every citation in a text (:func:`parse_citations`), also ranges (``[2-4]``,
  ``[2–4]``) and ``and`` (``[1 and 2]``), so that an answer is credited for whatever a reader would follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NUMBER = r"\d{1,3}"  # a source number: at most three digits (``[2019]`` is a year, not a citation)
MAX_RANGE = 20  # ``[a-b]`` spans at most this many numbers; a wider one is read as two numbers

# A whole list marker, ``[1]`` or ``[1, 3; 4]``.
_LIST_MARKER = re.compile(rf"^\[\s*{NUMBER}(?:\s*[,;]\s*{NUMBER})*\s*\]$")
_NUMBER = re.compile(NUMBER)
# Besides digits, the characters a list marker holds between its brackets; and a length no list marker reaches.
LIST_MARKER_SEPARATORS = frozenset(" ,;")
MAX_MARKER_LENGTH = 16

# Any citation in running text, with ranges and "and".
_CITATION = re.compile(rf"\[\s*({NUMBER}(?:\s*(?:,|;|-|–|and)\s*{NUMBER})*)\s*\]")
_PARTS = re.compile(r"\s*(?:,|;|and)\s*")
_RANGE = re.compile(r"\s*[-–]\s*")


def list_marker_numbers(marker: str) -> list[int] | None:
    """The numbers of a whole list marker (``"[1, 3]"`` -> ``[1, 3]``), or None when ``marker`` is not one."""
    if not _LIST_MARKER.match(marker):
        return None
    return [int(n) for n in _NUMBER.findall(marker)]


def parse_citations(text: str) -> list[int]:
    """Distinct cited numbers in order of first appearance: ``[1]``, ``[1, 3]``, ``[2-4]``, ``[1][2]``."""
    found: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        for part in _PARTS.split(match.group(1)):
            bounds = _RANGE.split(part)
            numbers: Iterable[int]
            if len(bounds) == 2 and 0 <= int(bounds[1]) - int(bounds[0]) <= MAX_RANGE:
                numbers = range(int(bounds[0]), int(bounds[1]) + 1)
            else:
                numbers = [int(b) for b in bounds]
            for number in numbers:
                found[number] = None
    return list(found)
