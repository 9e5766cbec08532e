"""The specialty registry: the folders of ``medlora/specialties/``, found by scanning, and their term matching.

Why folders found by scanning: a specialty used to be spread over a term list, a lexicon folder, a built-in set
folder and a table of HPO roots in the vocabulary code, so adding one meant editing four places and forgetting
one went unnoticed. Now each folder describes one specialty completely (the layout is in the package's
docstring) and nothing else in the package lists specialties by hand.

A general corpus record belongs to a specialty when one of its terms appears, as a whole word or phrase, in
the record's focus, synonyms or question. Which terms pulled in how many records is reported, so a term that
drags in unrelated diseases is easy to spot and remove.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medlora.errors import MedloraError

DEFAULT_LANGUAGE = "en"
# Languages a specialty may be written in (ISO 639-1); a variant name is "<specialty>-<lang>".
SUPPORTED_LANGUAGES = ("en", "fr")
# The files of a specialty folder.
MANIFEST = "specialty.yaml"
TERMS = "terms.txt"
LEXICON = "lexicon.txt"
QA_SET = "qa.jsonl"
QA_METADATA = "qa.meta.json"
_VARIANT = re.compile(r"^(?P<base>.+)-(?P<lang>[a-z]{2})$")


def read_term_file(path: Path) -> list[str]:
    """One lowercase term per line; blank lines and ``#`` comments ignored; order kept, duplicates dropped."""
    terms: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        term = line.split("#", 1)[0].strip().lower()
        if term:
            terms[term] = None
    return list(terms)


class Manifest(BaseModel):
    """``specialty.yaml``. Unknown keys are errors, so a misspelt ``hpo_root`` fails instead of silently
    leaving the specialty without HPO terms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1)  # the name shown to people
    language: str = DEFAULT_LANGUAGE
    hpo_root: str | None = Field(default=None, pattern=r"^HP:\d{7}$")

    @field_validator("language")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_LANGUAGES:
            raise ValueError(f"use one of {', '.join(SUPPORTED_LANGUAGES)}")
        return value


def _read_manifest(path: Path) -> Manifest:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Manifest.model_validate(data)
    except yaml.YAMLError as err:
        raise MedloraError(f"{path}: invalid YAML ({err})") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or '(top level)'}: {p['msg']}" for p in err.errors())
        raise MedloraError(f"{path}: invalid specialty manifest ({problems})") from None


@dataclass(frozen=True)
class Specialty:
    """A specialty: the terms that select its records, and what its folder describes.

    A ``.txt`` term list given by path, or a language variant without a folder of its own (``cardiology-fr``),
    has only a name, terms and a language: no folder, so no lexicon, built-in set or HPO root.
    """

    name: str
    terms: tuple[str, ...]
    language: str = DEFAULT_LANGUAGE
    label: str = ""
    hpo_root: str | None = None  # the HPO term whose subtree is this specialty's part of the ontology
    folder: Path | None = None

    @property
    def base(self) -> str:
        """The specialty a language variant belongs to (``dermatology-fr`` → ``dermatology``)."""
        return split_variant(self.name)[0]

    def _file(self, name: str) -> Path | None:
        path = self.folder / name if self.folder is not None else None
        return path if path is not None and path.is_file() else None

    @property
    def lexicon(self) -> Path | None:
        """The curated clinical vocabulary (terminology metrics, router), when the folder has one."""
        return self._file(LEXICON)

    @property
    def qa_set(self) -> Path | None:
        """The team-written QA set, when the folder has one."""
        return self._file(QA_SET)

    @classmethod
    def load(cls, name: str) -> Specialty:
        """A specialty or language variant by name (``dermatology-fr``), or a ``.txt`` term list by path.

        A variant with no folder of its own (``cardiology-fr``) is its specialty's terms in that language: it
        selects the same records from a corpus written in that language.
        """
        path = Path(name)
        if path.suffix == ".txt" and path.is_file():
            return cls(name=path.stem, terms=tuple(read_term_file(path)))
        registry = specialties()
        if name in registry:
            return registry[name]
        base, language = split_variant(name)
        if base != name:
            return cls(name=name, terms=registry[base].terms, language=language)
        known = ", ".join(f"{n} ({s.label})" for n, s in registry.items())
        raise MedloraError(
            f"unknown specialty '{name}': known ones are {known} (or <name>-<lang> for a language variant, "
            f"languages {', '.join(SUPPORTED_LANGUAGES)}), or give a path to a .txt term list")

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


# --- discovery -----------------------------------------------------------------------------------------


def search_roots() -> list[Path]:
    """The folders whose subfolders are specialties: this package's own.

    A function rather than a constant so a test can add a folder of its own and check that a new folder is all
    a new specialty needs.
    """
    return [Path(str(resources.files("medlora.specialties")))]


def specialties() -> dict[str, Specialty]:
    """Every specialty and language variant, by folder name, sorted (read once per process)."""
    return _discover(tuple(search_roots()))


def _variant_parts(name: str, names: set[str] | list[str]) -> tuple[str, str] | None:
    match = _VARIANT.match(name)
    if match and match["lang"] in SUPPORTED_LANGUAGES and match["base"] in names and match["base"] != name:
        return match["base"], match["lang"]
    return None


@lru_cache(maxsize=4)
def _discover(roots: tuple[Path, ...]) -> dict[str, Specialty]:
    folders: dict[str, Path] = {}
    for root in roots:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            if not (folder / MANIFEST).is_file():
                raise MedloraError(f"{folder}: a specialty folder needs a {MANIFEST} (label, language, hpo_root)")
            if folder.name in folders:
                raise MedloraError(f"specialty '{folder.name}' is defined twice: {folders[folder.name]}, {folder}")
            folders[folder.name] = folder
    found: dict[str, Specialty] = {}
    # Specialties before their variants: a variant without a terms.txt takes its specialty's terms.
    order = sorted(folders, key=lambda n: (_variant_parts(n, set(folders)) is not None, n))
    for name in order:
        folder, manifest = folders[name], _read_manifest(folders[name] / MANIFEST)
        variant = _variant_parts(name, set(folders))
        if variant is not None and manifest.language != variant[1]:
            raise MedloraError(f"{folder / MANIFEST}: language is {manifest.language}, but the folder name "
                               f"makes it the '{variant[1]}' variant of {variant[0]}")
        if (folder / TERMS).is_file():
            terms = tuple(read_term_file(folder / TERMS))
        elif variant is not None:
            terms = found[variant[0]].terms
        else:
            raise MedloraError(f"{folder}: a specialty folder needs a {TERMS} (only a language variant, "
                               "named <specialty>-<language>, may use its specialty's)")
        found[name] = Specialty(name, terms, manifest.language, manifest.label, manifest.hpo_root, folder)
    return dict(sorted(found.items()))


# --- names and built-in sets ---------------------------------------------------------------------------


def available_specialties() -> list[str]:
    """The specialties (not their language variants)."""
    names = list(specialties())
    return [name for name in names if _variant_parts(name, names) is None]


def split_variant(name: str) -> tuple[str, str]:
    """``"dermatology-fr"`` → ``("dermatology", "fr")``; a plain name → ``(name, "en")``.

    Only a known specialty with a supported language suffix is a variant, so a term list named
    ``my-list.txt`` is never mistaken for one.
    """
    return _variant_parts(name, available_specialties()) or (name, DEFAULT_LANGUAGE)


def variant_name(specialty: str, language: str) -> str:
    """The inverse of :func:`split_variant`: English is the plain name."""
    base, _ = split_variant(specialty)
    return base if language == DEFAULT_LANGUAGE else f"{base}-{language}"


def builtin_sets() -> dict[str, Path]:
    """Every team-written QA set, by specialty or variant name (``dermatology``, ``dermatology-fr`` ...),
    sorted by name."""
    return {name: s.qa_set for name, s in specialties().items() if s.qa_set is not None}


def english_builtin_specialties() -> list[str]:
    """Specialties with an English built-in set: the columns of matrix evaluation and the router's classes."""
    registry = specialties()
    return [name for name in builtin_sets() if registry[name].language == DEFAULT_LANGUAGE]


def language_variants(specialty: str) -> list[str]:
    """The built-in language variants of ``specialty`` (``dermatology`` → ``["dermatology-fr"]``)."""
    return [name for name in builtin_sets() if name != specialty and split_variant(name)[0] == specialty]


def builtin_set_metadata(name: str) -> dict[str, str]:
    """The sidecar ``qa.meta.json`` of a built-in set: language, review date, licence and disclaimer.

    A sidecar keeps the JSONL files plain ``{"input", "output"}`` records that any loader reads.
    """
    path = builtin_sets().get(name)
    sidecar = path.with_name(QA_METADATA) if path is not None else None
    if sidecar is None or not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MedloraError(f"{sidecar}:{err.lineno}: invalid JSON in a built-in set's metadata ({err.msg})") from None
    return {str(k): str(v) for k, v in data.items()}
