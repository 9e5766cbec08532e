"""What an evaluation runs on: the held-out questions, the sources each mode shows, and the vignettes.

Modes (``evaluation.modes``), each answering the same questions so every delta is paired:

- ``closed`` — *closed-book*: the question alone; measures what the model itself knows and how it writes;
- ``open`` — *open-book*: the top-k sources from the bot's index with every document of the evaluated split
  removed, so no source holds the reference answer itself; measures reading and citing related evidence;
- ``kb`` — *knowledge base*: the full index, exactly as the bot runs (the question's own document may be
  among the sources); optional, and labelled as such in reports.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlora.config import MedloraConfig
from medlora.data.prepare import load_manifest, load_split
from medlora.data.records import QARecord
from medlora.errors import MedloraError
from medlora.evaluation.metrics import get_metric
from medlora.evaluation.vignettes import Vignette, build_vignettes
from medlora.evaluation.vocabulary import Vocabulary, load_vocabulary
from medlora.retrieval import Source, SourceIndex, configured_index, held_out_documents

MODES = ("closed", "open", "kb")
MODE_LABELS = {"closed": "closed-book", "open": "open-book", "kb": "knowledge base"}


@dataclass
class EvaluationContext:
    """Everything the metrics need besides the model's answers, built once per specialty and split."""

    specialty: str
    split: str
    records: list[QARecord]
    modes: dict[str, list[list[Source]]]  # mode -> the sources shown with each record ([] closed-book)
    vocabulary: Vocabulary | None = None
    vignettes: list[Vignette] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {"qa": len(self.records), "vignettes": len(self.vignettes),
                **{f"qa_{mode}": len(self.records) for mode in self.modes}}


def data_path(value: str, kind: str) -> Path | None:
    from medlora.data.sources.abstracts import default_abstracts_csv
    from medlora.data.sources.medquad import default_medquad_dir

    if not value:
        return None
    if value != "auto":
        return Path(value)
    return default_medquad_dir() if kind == "medquad" else default_abstracts_csv()


def cache_dir(cfg: MedloraConfig) -> Path:
    from medlora.models.embedded import default_cache_dir

    return Path(cfg.evaluation.cache_dir) if cfg.evaluation.cache_dir else default_cache_dir()


def sample_records(records: Sequence[QARecord], limit: int | None, seed: int) -> list[QARecord]:
    """A seeded sample of at most ``limit`` records, in a stable order (all when ``limit`` is None)."""
    ordered = sorted(records, key=lambda r: (r.doc_id, r.question))
    if limit is None or len(ordered) <= limit:
        return ordered
    return sorted(random.Random(seed).sample(ordered, limit), key=lambda r: (r.doc_id, r.question))


def mode_sources(records: Sequence[QARecord], modes: Sequence[str], index: SourceIndex | None, k: int,
                 exclude_records: Sequence[QARecord], min_title_match: float = 0.0,
                 ) -> tuple[dict[str, list[list[Source]]], list[str]]:
    """The sources every record is shown with in every mode, chosen as the bot chooses them (``min_title_match``:
    ``service.min_source_match``); open-book never shows an excluded document."""
    out: dict[str, list[list[Source]]] = {}
    notes = []
    for mode in modes:
        if mode not in MODES:
            raise MedloraError(f"unknown evaluation mode '{mode}'; use {', '.join(MODES)}")
        if mode == "closed":
            out[mode] = [[] for _ in records]
            continue
        if index is None:
            notes.append(f"{MODE_LABELS[mode]} skipped: no source index (neither MedQuAD, abstracts nor built-in sets)")
            continue
        mask = index.mask(held_out_documents(exclude_records)) if mode == "open" else None
        out[mode] = [[hit.source for hit in index.search(r.question, k, mask=mask, min_title_match=min_title_match)]
                     for r in records]
        if min_title_match > 0 and records:
            shown = sum(bool(found) for found in out[mode])
            notes.append(f"{MODE_LABELS[mode]}: {shown} of {len(records)} questions were shown at least one source "
                         f"(a source is shown when the question names {min_title_match:.0%} of its title: "
                         "service.min_source_match); the others were answered without sources, as the bot does")
    return out, notes


def build_context(
    cfg: MedloraConfig,
    data_dir: str | Path,
    metric_names: Sequence[str],
    *,
    specialty: str | None = None,
    vocabulary: Vocabulary | None = None,
    index: SourceIndex | None = None,
    split: str = "test",
    modes: Sequence[str] | None = None,
) -> EvaluationContext:
    """Read ``split`` and build the vocabulary, the sources of every mode, and the vignettes."""
    ecfg = cfg.evaluation
    data_dir = Path(data_dir)
    held_out = load_split(data_dir, split)
    records = sample_records(held_out, ecfg.max_samples, ecfg.seed)
    if not records:
        raise MedloraError(f"{data_dir}: the {split} split is empty; prepare with a larger {split}_fraction")
    manifest = load_manifest(data_dir)
    specialty = specialty or manifest.get("specialty") or Path(cfg.data.specialty).stem
    modes = list(modes or ecfg.modes)
    if any(m != "closed" for m in modes) and index is None:
        index = configured_index(cfg)
    sources, notes = mode_sources(records, modes, index, ecfg.citation_top_k, held_out,
                                  cfg.service.min_source_match)
    ctx = EvaluationContext(specialty=specialty, split=split, records=records, modes=sources, notes=notes)

    if any(get_metric(name).needs_vocabulary for name in metric_names):
        ctx.vocabulary = vocabulary or load_vocabulary(specialty, data_path(ecfg.medquad_dir, "medquad"),
                                                       cache_dir(cfg))
        ctx.notes += [f"vocabulary: {n}" for n in ctx.vocabulary.notes]

    symptoms = sum(1 for r in held_out if r.qtype == "symptoms" and r.focus)
    if any(get_metric(name).task == "vignette" for name in metric_names) and ecfg.vignettes > 0:
        pool = [r for s in ("train", "validation", "test") if (data_dir / f"{s}.jsonl").is_file()
                for r in load_split(data_dir, s)]
        ctx.vignettes = build_vignettes(held_out, pool, ecfg.vignettes, ecfg.seed)
        if not ctx.vignettes:
            ctx.notes.append(f"no diagnostic vignettes: the {split} split has no usable MedQuAD 'symptoms' "
                             "answers (prepare with the medquad:auto source)")
        elif all(not v.options for v in ctx.vignettes):
            ctx.notes.append("multiple-choice diagnosis skipped: fewer than two foci in the prepared data")

    ctx.data = {
        "specialty": specialty,
        "split": split,
        "dataset_hash": manifest.get("dataset_hash"),
        f"{split}_split_sha256": (manifest.get("sha256") or {}).get(split),
        f"{split}_records": len(held_out),
        "questions_evaluated": len(records),
        "modes": [MODE_LABELS[m] for m in ctx.modes],
        "symptoms_answers": symptoms,
        "vignettes": len(ctx.vignettes),
        "citation_index": _describe_index(index) if len(ctx.modes) > 1 or "closed" not in ctx.modes else None,
        "seed": ecfg.seed,
        "sources": [{k: s.get(k) for k in ("spec", "records", "license", "attribution")}
                    for s in manifest.get("sources", [])],
        "vocabulary": ctx.vocabulary.counts if ctx.vocabulary is not None else {},
    }
    return ctx


def _describe_index(index: SourceIndex | None) -> str | None:
    if index is None or not index.sources:
        return None
    corpora = Counter(s.corpus for s in index.sources)
    return f"{len(index.sources)} passages (" + ", ".join(f"{k} {v}" for k, v in corpora.most_common()) + "), bm25s"
