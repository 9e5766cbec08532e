"""Specialties are term lists in data files (``medlora/data/specialties/<name>.txt``).

A general corpus record belongs to a specialty when one of its terms appears, as a whole word or phrase, in
the record's focus, synonyms or question. Which terms pulled in how many records is reported, so a term that
drags in unrelated diseases is easy to spot and remove.

This module is also the specialty registry: the specialties are the packaged term lists, and the team-written
QA sets are ``builtin/<specialty>_qa.jsonl`` (English) and ``builtin/<specialty>_qa.<lang>.jsonl`` (a language
variant, named ``<specialty>-<lang>``, e.g. ``dermatology-fr``). Nothing else in the package lists specialties
by hand, so adding one is adding its files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from medlora.errors import MedloraError

_PACKAGE_DATA = "medlora.data"
DEFAULT_LANGUAGE = "en"
# Languages a built-in set may be written in (ISO 639-1); a variant name is "<specialty>-<lang>".
SUPPORTED_LANGUAGES = ("en", "fr")
_VARIANT = re.compile(r"^(?P<base>.+)-(?P<lang>[a-z]{2})$")
_BUILTIN_SET = re.compile(r"^(?P<base>.+)_qa(?:\.(?P<lang>[a-z]{2}))?\.jsonl$")


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


def split_variant(name: str) -> tuple[str, str]:
    """``"dermatology-fr"`` → ``("dermatology", "fr")``; a plain name → ``(name, "en")``.

    Only a known specialty with a supported language suffix is a variant, so a term list named
    ``my-list.txt`` is never mistaken for one.
    """
    match = _VARIANT.match(name)
    if match and match["lang"] in SUPPORTED_LANGUAGES and match["base"] in available_specialties():
        return match["base"], match["lang"]
    return name, DEFAULT_LANGUAGE


def variant_name(specialty: str, language: str) -> str:
    """The inverse of :func:`split_variant`: English is the plain name."""
    base, _ = split_variant(specialty)
    return base if language == DEFAULT_LANGUAGE else f"{base}-{language}"


def builtin_sets() -> dict[str, Path]:
    """Every team-written QA set in the package, by specialty or variant name (``dermatology``,
    ``dermatology-fr`` ...), sorted by name."""
    folder = resources.files(_PACKAGE_DATA) / "builtin"
    found: dict[str, Path] = {}
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _BUILTIN_SET.match(entry.name)
            if match:
                name = match["base"] if not match["lang"] else f"{match['base']}-{match['lang']}"
                found[name] = Path(str(entry))
    return dict(sorted(found.items()))


def english_builtin_specialties() -> list[str]:
    """Specialties with an English built-in set: the columns of matrix evaluation and the router's classes."""
    return [name for name in builtin_sets() if split_variant(name)[1] == DEFAULT_LANGUAGE]


def language_variants(specialty: str) -> list[str]:
    """The built-in language variants of ``specialty`` (``dermatology`` → ``["dermatology-fr"]``)."""
    return [name for name in builtin_sets() if name != specialty and split_variant(name)[0] == specialty]


def builtin_set_metadata(name: str) -> dict[str, str]:
    """The sidecar ``<set>.meta.json`` of a built-in set: language, review date, licence and disclaimer.

    A sidecar keeps the JSONL files plain ``{"input", "output"}`` records that any loader reads.
    """
    path = builtin_sets().get(name)
    if path is None:
        return {}
    sidecar = path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MedloraError(f"{sidecar}:{err.lineno}: invalid JSON in a built-in set's metadata ({err.msg})") from None
    return {str(k): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class Specialty:
    name: str
    terms: tuple[str, ...]
    language: str = DEFAULT_LANGUAGE

    @property
    def base(self) -> str:
        """The specialty a language variant belongs to (``dermatology-fr`` → ``dermatology``)."""
        return split_variant(self.name)[0]

    @classmethod
    def load(cls, name: str) -> Specialty:
        """A packaged specialty by name (or language variant such as ``dermatology-fr``), or a term file by path."""
        path = Path(name)
        if path.suffix == ".txt" and path.is_file():
            return cls(name=path.stem, terms=tuple(read_term_file(path)))
        base, language = split_variant(name)
        packaged = resources.files(_PACKAGE_DATA) / "specialties" / f"{base}.txt"
        if not packaged.is_file():
            known = ", ".join(available_specialties())
            raise MedloraError(
                f"unknown specialty '{name}': known ones are {known} (or <name>-<lang> for a language variant, "
                f"languages {', '.join(SUPPORTED_LANGUAGES)}), or give a path to a .txt term list")
        return cls(name=name, terms=tuple(read_term_file(packaged)), language=language)

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
