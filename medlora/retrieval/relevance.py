"""When a source is *about* the question's condition: one definition for citation relevance, grounded
training's choice of the source to cite, and the leakage mask.

Two names describe the same condition when they are equal after :func:`~medlora.data.records.normalise`, share
a UMLS CUI, or one is a subtype of the other by its name: the shorter is the longer's head with modifiers in
front ("crusted scabies" → "scabies", "amyopathic dermatomyositis" → "dermatomyositis") or with at most two
words after it ("pemphigus vulgaris" → "pemphigus", "lichen planus pigmentosus"). A name that joins conditions
("deafness with vitiligo", "X and Y") is not a subtype of either, and a generic head ("syndrome", "carcinoma")
never stands for a condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from medlora.data.records import normalise

_GENERIC = frozenset({
    "syndrome", "disease", "disorder", "disorders", "cancer", "carcinoma", "tumor", "tumour", "neoplasm",
    "infection", "deficiency", "type", "familial", "congenital", "cell carcinoma", "skin", "rash", "lesion",
})
_JOINERS = frozenset({"with", "and", "or", "without", "plus", "associated", "due", "to"})
MAX_TRAILING_WORDS = 2


def family_keys(name: str) -> set[str]:
    """``name`` (normalised) and the parent names it is a subtype of by its wording."""
    key = normalise(name)
    words = key.split()
    keys = {key} if key else set()
    if not words or _JOINERS.intersection(words):
        return keys
    parents = [" ".join(words[i:]) for i in range(1, len(words))]  # head with modifiers dropped
    parents += [" ".join(words[:-n]) for n in range(1, MAX_TRAILING_WORDS + 1) if len(words) > n]
    return keys | {p for p in parents if _is_specific(p)}


def _is_specific(key: str) -> bool:
    return len(key) >= 5 and key not in _GENERIC and not key.isdigit() and not key.split()[-1].isdigit()


def condition_keys(names: Iterable[str]) -> set[str]:
    """Normalised names (focus and synonyms) of one condition, without empties."""
    return {normalise(n) for n in names if n and normalise(n)}


def related_names(keys: set[str], others: Iterable[str]) -> bool:
    """Whether any of ``others`` names the condition ``keys`` names, a subtype of it or its parent."""
    for other in others:
        if not other:
            continue
        other_key = normalise(other)
        if other_key in keys or family_keys(other) & keys:
            return True
        if any(other_key in family_keys(key) for key in keys):
            return True
    return False


def _field(source: Any, name: str) -> Any:
    return source.get(name) if isinstance(source, dict) else getattr(source, name, None)


def about_condition(source: Any, focus: str, synonyms: Sequence[str] = (), cuis: Sequence[str] = ()) -> bool:
    """Whether ``source`` (a Source or its dict) is about the condition named ``focus``/``synonyms``/``cuis``."""
    if set(_field(source, "cuis") or ()) & set(cuis):
        return True
    keys = condition_keys((focus, *synonyms))
    return bool(keys) and related_names(keys, (_field(source, "focus") or "", *(_field(source, "synonyms") or ())))
