"""The team-written QA sets: they load with the project's loader, carry their review metadata, hold the
clinical fixes, and are large enough for an offline demo that evaluates something."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from medlora.config import load_config
from medlora.data.prepare import builtin_dataset_path, load_manifest, load_split, prepare_dataset
from medlora.data.sources.json_pairs import iter_json_pairs
from medlora.specialties import builtin_set_metadata, builtin_sets
from medlora.evaluation.vignettes import build_vignettes


def _records(name: str):
    return list(iter_json_pairs(builtin_dataset_path(name)))


@pytest.mark.parametrize("name", ["dermatology", "cardiology", "radiology", "dermatology-fr"])
def test_each_builtin_set_loads_and_is_clean(name):
    records = _records(name)
    questions = Counter(r.question.strip().lower() for r in records)
    assert not [q for q, n in questions.items() if n > 1], "duplicate questions"
    for record in records:
        assert record.focus, f"{name}: every pair needs a focus (the split group)"
        assert record.qtype, f"{name}: every pair needs a category"
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", record.answer)) <= 8, record.question  # concise answers


@pytest.mark.parametrize("name", ["dermatology", "cardiology", "radiology", "dermatology-fr"])
def test_each_builtin_set_states_review_date_and_disclaimer(name):
    meta = builtin_set_metadata(name)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", meta["reviewed"])
    assert "not medical advice" in meta["disclaimer"].lower()
    assert meta["language"] == ("fr" if name.endswith("-fr") else "en")


def test_set_sizes_and_topics():
    radiology = _records("radiology")
    assert len(radiology) >= 120 and len({r.focus for r in radiology}) >= 35
    assert len(_records("dermatology-fr")) >= 100
    assert len(_records("dermatology")) >= 300


def test_clinical_fixes_are_in():
    cardiology = "\n".join(r.answer for r in _records("cardiology"))
    dermatology = _records("dermatology")
    derm_text = "\n".join(f"{r.focus} {r.question} {r.answer}" for r in dermatology)
    assert "angiedema" not in derm_text.lower() and "Angioedema" in {r.focus for r in dermatology}
    assert "annulus paradoxus" in cardiology and "annulus reversus" not in cardiology
    assert "mainly in young men of Southeast Asian origin" not in cardiology
    assert "24 hours" in cardiology and "severe asthma or active bronchospasm" in cardiology
    assert "class IIa" in cardiology and "INR has been 2 or more for 24 hours" in cardiology
    assert "intermediate-low" in cardiology and "MIRM" in derm_text
    assert "frequently autoimmune" not in derm_text


@pytest.mark.parametrize("specialty, conditions", [
    ("dermatology", ["Erythema nodosum", "Pyoderma gangrenosum", "Cutaneous small-vessel vasculitis",
                     "Lichen sclerosus", "Venous leg ulcer", "Folliculitis", "Skin abscess", "Varicella",
                     "Herpes zoster", "Syphilis"]),
    ("cardiology", ["Cardiac arrest", "Cardiogenic shock", "Bundle branch block", "Pericardial effusion",
                    "Prosthetic heart valve"]),
])
def test_conditions_clinics_see_are_covered(specialty, conditions):
    foci = {r.focus for r in _records(specialty)}
    assert not [c for c in conditions if c not in foci]


@pytest.mark.parametrize("specialty", ["dermatology", "cardiology"])
def test_lay_and_vignette_questions_present(specialty):
    categories = Counter(r.qtype for r in _records(specialty))
    assert categories["lay"] >= 5 and categories["vignette"] >= 4


def test_offline_demo_split_evaluates_60_questions_and_20_vignettes(tmp_path):
    cfg = load_config(preset="demo").with_overrides({"data.sources": ["builtin"], "data.specialty": "dermatology"})
    prepare_dataset(cfg.data, output_dir=tmp_path / "derm")
    test = load_split(tmp_path / "derm", "test")
    everything = test + load_split(tmp_path / "derm", "train") + load_split(tmp_path / "derm", "validation")
    assert min(len(test), cfg.evaluation.max_samples) >= 60
    vignettes = build_vignettes(test, everything, cfg.evaluation.vignettes, seed=cfg.evaluation.seed)
    assert len(vignettes) >= 20
    assert all(v.options and v.focus in v.options for v in vignettes)


def test_prepare_records_review_note_and_language(tmp_path):
    cfg = load_config().with_overrides({"data.sources": ["builtin"], "data.specialty": "radiology"})
    report = prepare_dataset(cfg.data, output_dir=tmp_path / "rad")
    assert "reviewed" in report.sources[0].note and "not medical advice" in report.sources[0].note
    manifest = load_manifest(tmp_path / "rad")
    assert manifest["language"] == "en" and manifest["specialty"] == "radiology"
    first = json.loads((tmp_path / "rad" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["metadata"]["language"] == "en"


def test_prepare_french_variant_skips_english_corpora(tmp_path):
    cfg = load_config().with_overrides({"data.sources": ["builtin", "medquad:auto"],
                                        "data.specialty": "dermatology-fr"})
    report = prepare_dataset(cfg.data, output_dir=tmp_path / "fr")
    by_spec = {s.spec: s for s in report.sources}
    assert by_spec["builtin"].records >= 100
    assert by_spec["medquad:auto"].records == 0 and "English corpus" in by_spec["medquad:auto"].note
    records = load_split(tmp_path / "fr", "train")
    assert {r.metadata["language"] for r in records} == {"fr"}
    assert load_manifest(tmp_path / "fr")["language"] == "fr"


def test_registry_lists_every_set_including_variants():
    sets = builtin_sets()
    assert {"dermatology", "cardiology", "radiology", "dermatology-fr"} <= set(sets)
    assert sets["dermatology-fr"].parts[-2:] == ("dermatology-fr", "qa.jsonl")
