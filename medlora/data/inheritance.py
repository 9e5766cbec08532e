"""Inheritance patterns as texts state them, and questions that ask for one.

One definition read by two readers: the evaluation's fact check (does an answer state the reference's pattern?)
and retrieval's answer-type rerank (for "Is X inherited?", prefer a passage that states a pattern at all).
"""

from __future__ import annotations

import re

_PATTERNS: dict[str, re.Pattern[str]] = {
    "autosomal dominant": re.compile(r"autosomal[\s-]+dominant", re.IGNORECASE),
    "autosomal recessive": re.compile(r"autosomal[\s-]+recessive", re.IGNORECASE),
    "x-linked dominant": re.compile(r"x[\s-]*linked[\s-]+dominant", re.IGNORECASE),
    "x-linked recessive": re.compile(r"x[\s-]*linked[\s-]+recessive", re.IGNORECASE),
    "x-linked": re.compile(r"x[\s-]*linked(?![\s-]+(?:dominant|recessive))", re.IGNORECASE),
    "y-linked": re.compile(r"y[\s-]*linked", re.IGNORECASE),
    "mitochondrial": re.compile(r"mitochondrial (?:inheritance|pattern|dna|genes?)|maternally inherited",
                                re.IGNORECASE),
    "multifactorial": re.compile(r"multifactorial|complex (?:inheritance|pattern)", re.IGNORECASE),
    "not inherited": re.compile(r"\b(?:is|are) not (?:usually |typically |generally )?inherited|"
                                r"not an inherited|non-?inherited|not passed (?:down|on)", re.IGNORECASE),
}
_INHERITANCE_QUESTION = re.compile(r"\binherit|\bhereditary\b|\bpassed down\b", re.IGNORECASE)


def inheritance_patterns(text: str) -> set[str]:
    """The inheritance patterns a text names (an unqualified "X-linked" only when no qualified one is)."""
    return {name for name, pattern in _PATTERNS.items() if pattern.search(text)}


def asks_inheritance(question: str) -> bool:
    """Whether a question's wording asks how (or whether) a condition is inherited."""
    return bool(_INHERITANCE_QUESTION.search(question))
