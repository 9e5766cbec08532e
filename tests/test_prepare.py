"""The prepare pipeline: dedupe, filters, leakage-free group splits, manifest, atomic output."""

from __future__ import annotations

import json

import pytest
from helpers import make_pairs

from medlora.config import DataConfig
from medlora.data.prepare import load_split, prepare_dataset
from medlora.data.records import QARecord
from medlora.data.splits import split_by_group
from medlora.errors import DataFormatError, MedloraError


@pytest.fixture
def terms(tmp_path):
    path = tmp_path / "test-specialty.txt"
    path.write_text("# test specialty\ncondition\n")
    return str(path)


def _cfg(terms, sources, **kw):
    return DataConfig(specialty=terms, sources=[str(s) for s in sources], test_fraction=0.2,
                      validation_fraction=0.2, **kw)


def test_split_keeps_each_group_on_one_side():
    records = [QARecord(f"q{i}", f"answer {i}", "s", focus=f"disease {i % 17}") for i in range(200)]
    splits = split_by_group(records, 0.1, 0.2, seed=3)
    groups = {name: {r.split_group() for r in items} for name, items in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    assert not (groups["validation"] & groups["test"])
    assert sum(len(v) for v in splits.values()) == 200
    assert splits["test"] and splits["validation"]
    assert split_by_group(records, 0.1, 0.2, seed=3) == splits  # seeded


def test_prepare_writes_splits_manifest_and_dedupes(tmp_path, terms):
    pairs = make_pairs(30)
    pairs.append(dict(pairs[0], input=pairs[0]["input"].upper() + "  "))  # duplicate after normalisation
    pairs.append({"input": "What is it, short answer?", "output": "tiny"})  # answer below min length
    src = tmp_path / "pairs.json"
    src.write_text(json.dumps(pairs))
    out = tmp_path / "out"
    report = prepare_dataset(_cfg(terms, [src]), output_dir=out)
    assert report.dropped["duplicate question+answer"] == 1
    assert report.dropped["answer shorter than min_answer_chars"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["counts"].values()) == 30
    assert set(manifest["sha256"]) == {"train", "validation", "test"}
    foci = {split: {r.focus for r in load_split(out, split)} for split in ("train", "validation", "test")}
    assert not (foci["train"] & foci["test"])


def test_bad_record_fails_and_leaves_previous_output_untouched(tmp_path, terms, qa_jsonl):
    out = tmp_path / "out"
    prepare_dataset(_cfg(terms, [qa_jsonl]), output_dir=out)
    before = (out / "train.jsonl").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(qa_jsonl.read_text() + '{"input": "missing output"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:41.*'output'"):
        prepare_dataset(_cfg(terms, [bad]), output_dir=out)
    assert (out / "train.jsonl").read_text() == before
    report = prepare_dataset(_cfg(terms, [bad], skip_invalid=True), output_dir=out)
    assert len(report.invalid) == 1
    assert json.loads((out / "manifest.json").read_text())["invalid_skipped"] == 1


def test_unknown_source_and_missing_medquad(tmp_path, terms):
    with pytest.raises(MedloraError, match="unknown source"):
        prepare_dataset(_cfg(terms, ["ftp:somewhere"]), output_dir=tmp_path / "o")
    with pytest.raises(MedloraError, match="MedQuAD directory not found"):
        prepare_dataset(_cfg(terms, [f"medquad:{tmp_path / 'nope'}"]), output_dir=tmp_path / "o")


def test_builtin_dermatology_set_meets_its_brief():
    from medlora.data.prepare import builtin_dataset_path
    from medlora.data.sources.json_pairs import iter_json_pairs

    records = list(iter_json_pairs(builtin_dataset_path("dermatology")))
    assert len(records) >= 150
    assert len({r.focus for r in records}) >= 40
    assert len({r.dedupe_key() for r in records}) == len(records)
    cardiology = list(iter_json_pairs(builtin_dataset_path("cardiology")))
    assert len(cardiology) >= 100


@pytest.mark.shared_data
def test_real_medquad_dermatology_selection(medquad_dir, tmp_path):
    cfg = DataConfig(specialty="dermatology", sources=[f"medquad:{medquad_dir}"])
    report = prepare_dataset(cfg, output_dir=tmp_path / "derm")
    assert sum(report.split_counts.values()) > 300
    assert report.term_counts  # the report shows which terms pulled records in
    test_foci = {r.focus.lower() for r in load_split(tmp_path / "derm", "test")}
    train_foci = {r.focus.lower() for r in load_split(tmp_path / "derm", "train")}
    assert test_foci and not (test_foci & train_foci)
    sources = json.loads((tmp_path / "derm" / "manifest.json").read_text())["sources"]
    assert sources[0]["license"] == "CC BY 4.0" and sources[0]["unanswered_skipped"] > 0


def test_source_specs_parse(tmp_path):
    from medlora.data.prepare import parse_source_spec

    assert parse_source_spec("builtin") == ("builtin", "")
    assert parse_source_spec("medquad:auto") == ("medquad", "auto")
    assert parse_source_spec("hub:org/data") == ("hub", "org/data")
    assert parse_source_spec("pairs.jsonl") == ("json", "pairs.jsonl")
    assert parse_source_spec("ftp:x") == ("ftp", "x")


def test_builtin_source_alone_prepares_offline(tmp_path):
    report = prepare_dataset(DataConfig(specialty="dermatology", sources=["builtin"]), output_dir=tmp_path / "d")
    assert sum(report.split_counts.values()) >= 150
    assert report.sources[0].license.startswith("Apache-2.0")
