"""When a source is *about* the question's condition: one definition for citation relevance, grounded
training's choice of the source to cite, and the leakage mask.

Two names describe the same condition when they are equal after :func:`~medlora.data.records.normalise`, share
a UMLS CUI, or one is a subtype of the other by its name: the shorter is the longer's head with modifiers in
front ("crusted scabies" → "scabies", "amyopathic dermatomyositis" → "dermatomyositis") or with at most two
words after it ("pemphigus vulgaris" → "pemphigus", "lichen planus pigmentosus"). A name that joins conditions
("deafness with vitiligo", "X and Y") is not a subtype of either, and a generic head ("syndrome", "carcinoma")
never stands for a condition. OMIM and Orphanet write many names inverted ("Epidermolysis bullosa, junctional,
with pyloric atresia"; "Ectodermal dysplasia 1, hypohidrotic, X-linked"); they are also read in reading order
("junctional epidermolysis bullosa with pyloric atresia"), and a joined name may drop the modifiers in front of
its head ("epidermolysis bullosa with pyloric atresia") but never its joined part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from medlora.data.records import normalise

_GENERIC = frozenset({
    "syndrome", "disease", "disorder", "disorders", "cancer", "carcinoma", "tumor", "tumour", "neoplasm",
    "infection", "deficiency", "type", "familial", "congenital", "cell carcinoma", "skin", "rash", "lesion",
})
_JOINERS = frozenset({"with", "and", "or", "without", "plus", "associated", "due", "to"})
MAX_TRAILING_WORDS = 2
# A word that modifies a disease name in an inverted OMIM/Orphanet name: an adjective ("junctional",
# "hypohidrotic", "X-linked", "familial", "presenile", "lamellar") — not a noun, so a comma list of features
# ("Alopecia, epilepsy, pyorrhea, mental subnormality") is never read as one condition.
_MODIFIER = re.compile(r"^(?:[a-z]-linked|.+(?:al|ic|ed|ous|ive|ar|ile|ary|oid|ant|ent))$")
_POSTPOSED = re.compile(r"^(?:type\b|[0-9ivx]+[a-z]?$)", re.IGNORECASE)  # "type 2", "IV" stay after the head


def reading_order(name: str) -> str:
    """An inverted name in reading order ("Keratosis, seborrheic, somatic" → "somatic seborrheic keratosis");
    any other name unchanged."""
    head, *parts = [p.strip() for p in name.split(",")]
    if not parts or not head or not all(parts):
        return name
    before: list[str] = []
    after: list[str] = []
    for part in parts:
        words = part.lower().split()
        if words[0] in _JOINERS or _POSTPOSED.match(part):
            after.append(part)
        elif all(_MODIFIER.match(w) for w in words):
            before.insert(0, part)
        else:
            return name
    return " ".join([*before, head, *after])


def family_keys(name: str) -> set[str]:
    """``name`` (normalised, as written and in reading order) and the parent names it is a subtype of by its
    wording."""
    keys: set[str] = set()
    for written in dict.fromkeys((name, reading_order(name))):
        keys |= _family_keys(normalise(written))
    return keys


def _family_keys(key: str) -> set[str]:
    words = key.split()
    keys = {key} if key else set()
    joiner = next((i for i, w in enumerate(words) if w in _JOINERS), None)
    if joiner is not None:  # drop modifiers in front of the head only; the joined part stays
        head, joined = words[:joiner], words[joiner:]
        return keys | {" ".join(head[i:] + joined) for i in range(1, len(head)) if _is_specific(" ".join(head[i:]))}
    if not words:
        return keys
    parents = [" ".join(words[i:]) for i in range(1, len(words))]  # head with modifiers dropped
    parents += [" ".join(words[:-n]) for n in range(1, MAX_TRAILING_WORDS + 1) if len(words) > n]
    return keys | {p for p in parents if _is_specific(p)}


def _is_specific(key: str) -> bool:
    return len(key) >= 5 and key not in _GENERIC and not key.isdigit() and not key.split()[-1].isdigit()


def condition_keys(names: Iterable[str]) -> set[str]:
    """Normalised names (focus and synonyms, as written and in reading order) of one condition, without empties."""
    return {key for n in names if n for key in (normalise(n), normalise(reading_order(n))) if key}


def related_names(keys: set[str], others: Iterable[str]) -> bool:
    """Whether any of ``others`` names the condition ``keys`` names, a subtype of it or its parent."""
    for other in others:
        if not other:
            continue
        if family_keys(other) & keys:  # its own names (both readings) are among its family keys
            return True
        other_keys = condition_keys((other,))
        if any(other_keys & _family_keys(key) for key in keys):
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
