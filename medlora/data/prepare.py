"""``medlora prepare``: sources → clean, filtered, deduplicated records → group splits → JSONL + manifest.

Source specs (``data.sources`` in config.yaml, or ``--source`` flags):

- ``builtin`` — the team-written QA set shipped for the specialty (offline default);
- ``medquad:auto`` / ``medquad:DIR`` — MedQuAD XML (``auto``: ``$MEDQUAD_DIR`` or ``../shared/data/medquad``,
  skipped with a note when absent);
- ``abstracts:auto`` / ``abstracts:CSV`` — medical abstracts turned into QA pairs;
- ``hub:DATASET_ID`` — a ``datasets`` hub dataset with ``input``/``output`` (or ``question``/``answer``) columns;
- a path to a ``.json``/``.jsonl`` file of ``{"input","output"}`` pairs (``json:PATH`` also works).

Specialty filtering applies to the general corpora (MedQuAD, abstracts, hub); a JSON file or the built-in set
is taken as already belonging to the specialty.

A language variant (``--specialty dermatology-fr``, or ``--language fr``) reads the built-in set written in that
language; the English general corpora are skipped for it with a note, so a French adapter learns French.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.progress import Progress

from medlora.config import DataConfig
from medlora.data.records import QARecord, clean_answer, clean_text
from medlora.data.sources import abstracts as abstracts_source
from medlora.data.sources import medquad as medquad_source
from medlora.data.sources.json_pairs import iter_json_pairs
from medlora.data.splits import split_by_group
from medlora.errors import DataFormatError, MedloraError
from medlora.fsutil import atomic_directory
from medlora.specialties import DEFAULT_LANGUAGE, Specialty, builtin_set_metadata, builtin_sets

SPLITS = ("train", "validation", "test")
BUILTIN_LICENSE = "Apache-2.0 (medlora team-written)"


@dataclass
class SourceReport:
    spec: str
    location: str
    license: str
    records: int = 0
    note: str = ""
    unanswered_skipped: int = 0
    attribution: str = ""


@dataclass
class PrepareReport:
    specialty: str
    output_dir: Path
    language: str = DEFAULT_LANGUAGE
    sources: list[SourceReport] = field(default_factory=list)
    term_counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    split_groups: dict[str, int] = field(default_factory=dict)
    manifest_path: Path | None = None


def builtin_dataset_path(specialty: str) -> Path:
    """The packaged team-written set of a specialty or language variant (``dermatology-fr``)."""
    path = builtin_sets().get(specialty)
    if path is None:
        known = ", ".join(builtin_sets())
        raise MedloraError(f"no built-in QA set for specialty '{specialty}' (built-in sets: {known}); "
                           "give a JSON/JSONL file as a source")
    return path


def _builtin_note(name: str) -> str:
    """What the sidecar says about a built-in set, for the prepare report and the manifest."""
    meta = builtin_set_metadata(name)
    parts = []
    if meta.get("reviewed"):
        parts.append(f"reviewed {meta['reviewed']}")
    if meta.get("disclaimer"):
        parts.append("educational material, not medical advice")
    return "; ".join(parts)


def _shipped_location(path: Path) -> str:
    """A packaged file as reports and manifests name it (``medlora/specialties/dermatology/qa.jsonl``): relative
    to the installed package, so the same on every machine; a file outside the package keeps its path."""
    try:
        return path.relative_to(Path(str(resources.files("medlora"))).parent).as_posix()
    except ValueError:
        return str(path)


SOURCE_KINDS = ("builtin", "json", "medquad", "abstracts", "hub")


def parse_source_spec(spec: str) -> tuple[str, str]:
    """``"medquad:DIR"`` → ``("medquad", "DIR")``; ``"builtin"`` → ``("builtin", "")``; a bare path → json."""
    kind, sep, arg = spec.partition(":")
    if kind in SOURCE_KINDS:
        return kind, arg
    if sep and not Path(spec).exists() and Path(spec).suffix.lower() not in (".json", ".jsonl"):
        return kind, arg  # an unknown kind: reported by the caller
    return "json", spec


def _locate(arg: str, auto_default: Path | None, what: str, env_var: str) -> Path | None:
    """``auto`` (or empty) → the default location or ``None`` when absent; an explicit path must exist."""
    if arg in ("", "auto"):
        return auto_default if auto_default is not None and auto_default.exists() else None
    path = Path(arg)
    if not path.exists():
        raise MedloraError(f"{arg}: {what} not found (give an existing path, or 'auto' to use ${env_var})")
    return path


def _collect(
    spec: str, specialty: Specialty, cfg: DataConfig, repo_root: Path, report: PrepareReport, progress: Progress
) -> list[QARecord]:
    """Read one source spec into records (already specialty-filtered where that applies)."""
    errors: list[DataFormatError] | None = [] if cfg.skip_invalid else None
    kind, arg = parse_source_spec(spec)
    records: list[QARecord] = []

    if kind in ("medquad", "abstracts", "hub") and specialty.language != DEFAULT_LANGUAGE:
        src = SourceReport(spec, "", "")
        src.note = f"English corpus; not used for the '{specialty.language}' variant {specialty.name}"
        report.sources.append(src)
        return []
    if kind == "builtin":
        path = builtin_dataset_path(specialty.name)
        records = list(iter_json_pairs(path, source=f"builtin/{specialty.name}", license=BUILTIN_LICENSE,
                                       errors=errors))
        src = SourceReport(spec, _shipped_location(path), BUILTIN_LICENSE, note=_builtin_note(specialty.name))
        language = builtin_set_metadata(specialty.name).get("language", specialty.language)
        for record in records:  # the language-match metric reads it instead of guessing from the question
            record.metadata.setdefault("language", language)
    elif kind == "json":
        path = Path(arg)
        records = list(iter_json_pairs(path, errors=errors))
        src = SourceReport(spec, str(path), "as declared by the file's owner")
    elif kind == "medquad":
        directory = _locate(arg, medquad_source.default_medquad_dir(repo_root), "MedQuAD directory", "MEDQUAD_DIR")
        src = SourceReport(spec, str(directory or ""), medquad_source.LICENSE, attribution=medquad_source.ATTRIBUTION)
        if directory is None:
            src.note = "not found: run `medlora data download medquad` (or set MEDQUAD_DIR); skipped"
            report.sources.append(src)
            return []
        stats = medquad_source.MedquadStats()
        files = sorted(directory.glob("*/*.xml"))
        task = progress.add_task("Reading MedQuAD", total=len(files))
        for doc in medquad_source.iter_documents(directory, errors=errors):
            progress.advance(task)
            for record in medquad_source.document_records(doc, stats):
                terms = specialty.matching_terms(record.focus, *record.synonyms, record.question)
                if terms:
                    record.metadata["matched_terms"] = terms
                    records.append(record)
        progress.update(task, completed=len(files))
        src.unanswered_skipped = stats.unanswered
        src.note = (f"{stats.documents} documents, {stats.pairs} answered pairs read, "
                    f"{stats.unanswered} unanswered skipped")
    elif kind == "abstracts":
        csv_path = _locate(arg, abstracts_source.default_abstracts_csv(repo_root), "abstracts CSV",
                           "MEDICAL_ABSTRACTS_CSV")
        src = SourceReport(spec, str(csv_path or ""), abstracts_source.LICENSE,
                           attribution=abstracts_source.ATTRIBUTION)
        if csv_path is None:
            src.note = "not found: run `medlora data download abstracts` (or set MEDICAL_ABSTRACTS_CSV); skipped"
            report.sources.append(src)
            return []
        records = list(abstracts_source.abstract_records(
            abstracts_source.iter_abstracts(csv_path, errors=errors), specialty, source="medical_abstracts"))
    elif kind == "hub":
        records = _hub_records(arg, specialty)
        src = SourceReport(spec, arg, "see the dataset card")
    else:
        raise MedloraError(f"unknown source '{spec}': use builtin, medquad:DIR, abstracts:CSV, hub:ID or a JSON path")

    for err in errors or []:
        report.invalid.append(str(err))
    for record in records:
        for term in record.metadata.get("matched_terms", []):
            report.term_counts[term] += 1
    src.records = len(records)
    report.sources.append(src)
    return records


def _hub_records(dataset_id: str, specialty: Specialty) -> list[QARecord]:
    """Load a hub dataset through ``datasets``; fails with a clear message when the hub is unreachable."""
    try:
        from datasets import load_dataset

        dataset = load_dataset(dataset_id, split="train")
    except Exception as err:  # noqa: BLE001 - datasets raises many types for "offline"
        raise MedloraError(
            f"could not load dataset '{dataset_id}' from the hub ({type(err).__name__}). Offline? Export it to "
            "JSONL with input/output fields and pass the file path as a source instead."
        ) from None
    columns = set(dataset.column_names)
    q_col, a_col = ("input", "output") if {"input", "output"} <= columns else ("question", "answer")
    if not {q_col, a_col} <= columns:
        raise MedloraError(f"hub dataset '{dataset_id}' has columns {sorted(columns)}; need input/output")
    records = []
    for index, row in enumerate(dataset):
        terms = specialty.matching_terms(row[q_col], row[a_col])
        if terms:
            records.append(QARecord(question=row[q_col], answer=row[a_col], source=f"hub/{dataset_id}",
                                    doc_id=f"{dataset_id}-{index}", metadata={"matched_terms": terms}))
    return records


def _clean_and_filter(records: list[QARecord], cfg: DataConfig, report: PrepareReport) -> list[QARecord]:
    kept: list[QARecord] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        record.question = clean_text(record.question)
        record.answer = clean_answer(record.answer)
        if len(record.question) < cfg.min_question_chars:
            report.dropped["question shorter than min_question_chars"] += 1
        elif len(record.answer) < cfg.min_answer_chars:
            report.dropped["answer shorter than min_answer_chars"] += 1
        elif len(record.answer) > cfg.max_answer_chars:
            report.dropped["answer longer than max_answer_chars"] += 1
        elif record.dedupe_key() in seen:
            report.dropped["duplicate question+answer"] += 1
        else:
            seen.add(record.dedupe_key())
            kept.append(record)
    return kept


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_dataset(cfg: DataConfig, repo_root: str | Path | None = None, output_dir: str | Path | None = None,
                    progress: Progress | None = None) -> PrepareReport:
    """Run the whole pipeline and write ``{train,validation,test}.jsonl`` + ``manifest.json`` atomically."""
    repo_root = Path(repo_root or Path.cwd())
    specialty = Specialty.load(cfg.specialty)
    out = Path(output_dir or cfg.output_dir.format(specialty=specialty.name))
    report = PrepareReport(specialty=specialty.name, output_dir=out, language=specialty.language)
    own_progress = progress is None
    progress = progress or Progress(transient=True)
    with progress if own_progress else nullcontext():
        records: list[QARecord] = []
        for spec in cfg.sources:
            records.extend(_collect(spec, specialty, cfg, repo_root, report, progress))
    if report.invalid and not cfg.skip_invalid:  # pragma: no cover - errors raise before this
        raise MedloraError(report.invalid[0])
    records = _clean_and_filter(records, cfg, report)
    if cfg.max_records and len(records) > cfg.max_records:
        report.dropped[f"beyond max_records={cfg.max_records} (seeded sample)"] += len(records) - cfg.max_records
        records = random.Random(cfg.seed).sample(records, cfg.max_records)
    if not records:
        raise MedloraError(f"no records left for specialty '{specialty.name}' from sources {cfg.sources}")
    splits = split_by_group(records, cfg.validation_fraction, cfg.test_fraction, cfg.seed)
    report.split_counts = {name: len(items) for name, items in splits.items()}
    report.split_groups = {name: len({r.split_group() for r in items}) for name, items in splits.items()}
    _write_atomically(out, splits, report, cfg)
    return report


def _write_atomically(out: Path, splits: dict[str, list[QARecord]], report: PrepareReport, cfg: DataConfig) -> None:
    with atomic_directory(out) as staging:
        hashes = {}
        for name in SPLITS:
            path = staging / f"{name}.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for record in splits[name]:
                    handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            hashes[name] = _sha256(path)
        manifest = build_manifest(report, cfg, hashes)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    report.manifest_path = out / "manifest.json"


def build_manifest(report: PrepareReport, cfg: DataConfig, hashes: dict[str, str]) -> dict[str, Any]:
    return {
        "specialty": report.specialty,
        "language": report.language,
        "sources": [vars(s) for s in report.sources],
        "filters": {
            "min_question_chars": cfg.min_question_chars,
            "min_answer_chars": cfg.min_answer_chars,
            "max_answer_chars": cfg.max_answer_chars,
            "max_records": cfg.max_records,
            "dedupe": "normalised question + answer",
            "split": "by disease focus / source document",
            "seed": cfg.seed,
        },
        "dropped": dict(report.dropped),
        "invalid_skipped": len(report.invalid),
        "term_counts": dict(report.term_counts.most_common()),
        "counts": report.split_counts,
        "groups": report.split_groups,
        "sha256": hashes,
        "dataset_hash": hashlib.sha256("".join(hashes[s] for s in SPLITS).encode()).hexdigest()[:16],
    }


def load_split(directory: str | Path, split: str) -> list[QARecord]:
    path = Path(directory) / f"{split}.jsonl"
    if not path.is_file():
        raise MedloraError(f"{path}: split not found; run `medlora prepare` first")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(QARecord.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise DataFormatError(f"{path}:{lineno}", f"not a prepared record ({err})") from None
    return records


def load_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
