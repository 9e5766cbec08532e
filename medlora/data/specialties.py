"""Specialties are term lists in data files (``medlora/data/specialties/<name>.txt``).

A general corpus record belongs to a specialty when one of its terms appears, as a whole word or phrase, in
the record's focus, synonyms or question. Which terms pulled in how many records is reported, so a term that
drags in unrelated diseases is easy to spot and remove.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from medlora.errors import MedloraError

_PACKAGE_DATA = "medlora.data"


def read_term_file(path: Path | resources.abc.Traversable) -> list[str]:
    """One lowercase term per line; blank lines and ``#`` comments ignored; order kept, duplicates dropped."""
    terms: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        term = line.split("#", 1)[0].strip().lower()
        if term:
            terms[term] = None
    return list(terms)


def available_specialties() -> list[str]:
    folder = resources.files(_PACKAGE_DATA) / "specialties"
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))


@dataclass(frozen=True)
class Specialty:
    name: str
    terms: tuple[str, ...]

    @classmethod
    def load(cls, name: str) -> Specialty:
        """A packaged specialty by name, or a term file given by path."""
        path = Path(name)
        if path.suffix == ".txt" and path.is_file():
            return cls(name=path.stem, terms=tuple(read_term_file(path)))
        packaged = resources.files(_PACKAGE_DATA) / "specialties" / f"{name}.txt"
        if not packaged.is_file():
            known = ", ".join(available_specialties())
            raise MedloraError(f"unknown specialty '{name}': known ones are {known}, or give a path to a .txt term list")
        return cls(name=name, terms=tuple(read_term_file(packaged)))

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Longest first so "skin cancer" wins over "skin" in the per-term report.
        alternatives = sorted(self.terms, key=len, reverse=True)
        return re.compile(r"\b(" + "|".join(re.escape(t) for t in alternatives) + r")\b", re.IGNORECASE)

    def matching_terms(self, *texts: str) -> list[str]:
        """Terms of this specialty found in any of ``texts`` (lowercased, unique, in order of appearance)."""
        found: dict[str, None] = {}
        for text in texts:
            for match in self._pattern.finditer(text):
                found[match.group(1).lower()] = None
        return list(found)
