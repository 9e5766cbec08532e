"""Source retrieval with bm25s, shared by the bot (cited answers) and evaluation (citation relevance).

Sources are whole documents — a MedQuAD document (focus, site, URL), a medical abstract, or a topic of the
built-in QA sets — so a citation points at something a reader can open. The index is built once and cached
on disk, keyed by a fingerprint of its inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import groupby
from pathlib import Path

import bm25s

from medlora.data.records import QARecord, snippet
from medlora.fsutil import atomic_directory
from medlora.service.translate import expand_query

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Source:
    """A citable document. ``text`` is a short snippet for prompts; the index sees the full text."""

    source_id: str
    title: str
    url: str
    text: str
    focus: str = ""
    cuis: tuple[str, ...] = ()
    corpus: str = ""
    license: str = ""


@dataclass(frozen=True)
class Retrieved:
    source: Source
    score: float


def sources_from_records(records: Iterable[QARecord], corpus: str) -> list[tuple[Source, str]]:
    """Group records into one source per document (MedQuAD) or per focus (built-in sets).

    Returns ``(source, full_text)`` pairs: the full text of all answers is indexed, a snippet is shown.
    """
    keyed = sorted(records, key=lambda r: (r.url or r.focus or r.doc_id))
    out = []
    for key, group in groupby(keyed, key=lambda r: (r.url or r.focus or r.doc_id)):
        items = list(group)
        first = items[0]
        full = " ".join(r.answer for r in items)
        title = first.focus or first.question
        source = Source(
            source_id=f"{corpus}:{hashlib.sha1(key.encode()).hexdigest()[:10]}",
            title=title,
            url=first.url,
            text=snippet(items[0].answer),
            focus=first.focus,
            cuis=tuple(first.cuis),
            corpus=corpus,
            license=first.license,
        )
        out.append((source, f"{title} {' '.join(first.synonyms)} {full}"))
    return out


@dataclass
class SourceIndex:
    """A BM25 index over sources; ``search`` returns only sources with a positive score."""

    sources: list[Source]
    retriever: bm25s.BM25 = field(repr=False)

    @classmethod
    def build(cls, documents: Sequence[tuple[Source, str]]) -> SourceIndex:
        if not documents:
            raise ValueError("cannot build a source index from no documents")
        tokens = bm25s.tokenize([text for _, text in documents], stopwords="en", show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(sources=[source for source, _ in documents], retriever=retriever)

    def search(self, query: str, k: int = 3) -> list[Retrieved]:
        if k <= 0 or not query.strip():
            return []
        return self.search_untranslated(expand_query(query), k)  # a French question also searches in English

    def search_untranslated(self, query: str, k: int = 3) -> list[Retrieved]:
        """BM25 search of ``query`` as given (no cross-language expansion)."""
        if k <= 0 or not query.strip():
            return []
        query_tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if not query_tokens[0]:
            return []
        k = min(k, len(self.sources))
        ids, scores = self.retriever.retrieve(query_tokens, k=k, show_progress=False)
        return [
            Retrieved(self.sources[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0
        ]

    def save(self, directory: str | Path) -> None:
        with atomic_directory(directory) as staging:
            self.retriever.save(str(staging / "bm25"), show_progress=False)
            with (staging / "sources.jsonl").open("w", encoding="utf-8") as handle:
                for source in self.sources:
                    handle.write(json.dumps(asdict(source), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> SourceIndex:
        directory = Path(directory)
        retriever = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
        sources = []
        for line in (directory / "sources.jsonl").read_text(encoding="utf-8").splitlines():
            data = json.loads(line)
            data["cuis"] = tuple(data.get("cuis", ()))
            sources.append(Source(**data))
        return cls(sources=sources, retriever=retriever)


def _fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        digest.update(str(path).encode())
        digest.update(str(len(files)).encode())
        for file in files[:: max(1, len(files) // 200)]:  # a sample keeps this fast on 11k files
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def collect_default_documents(
    medquad_dir: Path | None, abstracts_csv: Path | None, builtin_specialties: Sequence[str]
) -> list[tuple[Source, str]]:
    """MedQuAD answered documents, the abstracts, and the built-in QA topics, as indexable documents."""
    from medlora.data.prepare import BUILTIN_LICENSE, builtin_dataset_path
    from medlora.data.sources import abstracts as abstracts_source
    from medlora.data.sources import medquad as medquad_source
    from medlora.data.sources.json_pairs import iter_json_pairs

    documents: list[tuple[Source, str]] = []
    if medquad_dir is not None and medquad_dir.is_dir():
        records = [r for doc in medquad_source.iter_documents(medquad_dir, errors=[])
                   for r in medquad_source.document_records(doc)]
        documents += sources_from_records(records, "medquad")
    if abstracts_csv is not None and abstracts_csv.is_file():
        for abstract in abstracts_source.iter_abstracts(abstracts_csv):
            source = Source(
                source_id=f"abstracts:{abstract.row}", title=abstract.title, url="", text=snippet(abstract.body),
                focus=abstract.condition, corpus="medical_abstracts", license=abstracts_source.LICENSE,
            )
            documents.append((source, abstract.text))
    for specialty in builtin_specialties:
        records = list(iter_json_pairs(builtin_dataset_path(specialty), source=f"builtin/{specialty}",
                                       license=BUILTIN_LICENSE))
        documents += sources_from_records(records, f"builtin-{specialty}")
    return documents


def load_or_build_default_index(
    cache_dir: Path,
    medquad_dir: Path | None,
    abstracts_csv: Path | None,
    builtin_specialties: Sequence[str] = ("dermatology", "cardiology"),
) -> SourceIndex:
    """The default index, from the cache when its inputs have not changed."""
    from medlora.data.prepare import builtin_dataset_path

    inputs = [p for p in (medquad_dir, abstracts_csv) if p is not None and p.exists()]
    inputs += [builtin_dataset_path(name) for name in builtin_specialties]  # an edited set rebuilds the index
    key = _fingerprint(inputs) + "-" + "-".join(builtin_specialties)
    directory = cache_dir / "indexes" / key
    if (directory / "sources.jsonl").is_file():
        return SourceIndex.load(directory)
    log.info("Building the source index (once) into %s", directory)
    index = SourceIndex.build(collect_default_documents(medquad_dir, abstracts_csv, builtin_specialties))
    index.save(directory)
    return index
