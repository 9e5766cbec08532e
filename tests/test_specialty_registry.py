"""The specialty registry (one folder per specialty, language variants) and routing over three specialties."""

from __future__ import annotations

import json

import pytest
from helpers import make_adapter

from medlora.config import MedloraConfig
from medlora.specialties import (
    Specialty,
    english_builtin_specialties,
    language_variants,
    split_variant,
    variant_name,
)
from medlora.errors import MedloraError
from medlora.service.llm_service import LLMService
from medlora.service.routing import build_router, builtin_records, routing_accuracy, training_questions

RADIOLOGY_QUESTION = "Does a patient with an eGFR of 25 need hydration before a contrast-enhanced CT scan?"
FRENCH_QUESTION = "Diagnostic d'une lésion pigmentée asymétrique ?"


def test_variants_are_parsed_only_for_known_specialties_and_languages():
    assert split_variant("dermatology-fr") == ("dermatology", "fr")
    assert split_variant("dermatology") == ("dermatology", "en")
    assert split_variant("my-list") == ("my-list", "en")  # not a specialty: no variant
    assert split_variant("dermatology-xx") == ("dermatology-xx", "en")  # not a supported language
    assert variant_name("dermatology", "fr") == "dermatology-fr"
    assert variant_name("dermatology-fr", "en") == "dermatology"
    french = Specialty.load("dermatology-fr")
    assert french.language == "fr" and french.base == "dermatology"
    assert french.terms == Specialty.load("dermatology").terms
    with pytest.raises(MedloraError, match="language variant"):
        Specialty.load("dermatology-xx")


def test_registry_replaces_hard_coded_lists():
    assert english_builtin_specialties() == ["cardiology", "dermatology", "radiology"]
    assert language_variants("dermatology") == ["dermatology-fr"]
    assert language_variants("radiology") == []
    radiology = Specialty.load("radiology")
    assert radiology.matching_terms("Gadolinium safety for MRI in kidney failure") == ["gadolinium", "mri"]
    assert radiology.matching_terms("Radiation therapy for breast cancer") == []  # plain "radiation" omitted


def test_routing_accuracy_covers_all_three_specialties():
    report = routing_accuracy(test_fraction=0.3, seed=0, threshold=0.6)
    assert set(report.accuracy) == {"dermatology", "cardiology", "radiology"}
    assert report.test_questions["radiology"] >= 20
    for specialty, accuracy in report.accuracy.items():
        assert accuracy > 0.6, (specialty, report)  # about 25 held-out questions each: a wide interval
    assert report.overall > 0.85, report


def test_french_questions_teach_the_base_specialty_unless_a_variant_adapter_is_loaded():
    french = {r.question for r in builtin_records("dermatology-fr")}
    assert french <= set(training_questions("dermatology"))
    assert not french & set(training_questions("dermatology", with_variants=False))

    three = build_router([("dermatology", "dermatology"), ("cardiology", "cardiology"),
                          ("radiology", "radiology")], threshold=0.5)
    assert three is not None
    assert three.route(RADIOLOGY_QUESTION).adapter == "radiology"
    assert three.route(FRENCH_QUESTION).adapter == "dermatology"

    with_variant = build_router([("dermatology", "dermatology"), ("dermatology-fr", "dermatology-fr"),
                                 ("radiology", "radiology")], threshold=0.5)
    assert with_variant is not None
    assert with_variant.route(FRENCH_QUESTION).adapter == "dermatology-fr"
    assert with_variant.route("What dermoscopic features suggest melanoma?").adapter == "dermatology"


def test_service_routes_a_radiology_question_to_the_radiology_adapter(tiny_llama_dir, tmp_path):
    adapters = tmp_path / "models"
    for seed, name in enumerate(("dermatology", "cardiology", "radiology"), start=1):
        make_adapter(tiny_llama_dir, adapters / f"lora-{name}-adapter", name, seed=seed)
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "models.llm.adapters_dir": str(adapters),
        "service.retrieval": False, "service.max_new_tokens": 4,
        "data.output_dir": str(tmp_path / "processed" / "{specialty}"),
    })
    service = LLMService(cfg)
    service.load_model()
    answers = service.answer_batch(
        [RADIOLOGY_QUESTION, "How is acne vulgaris with comedones treated?",
         "How is atrial fibrillation anticoagulated?"], ["auto"] * 3)
    assert [a.adapter for a in answers] == ["radiology", "dermatology", "cardiology"]


def test_the_source_index_takes_its_specialties_from_the_registry():
    from medlora.retrieval.corpus import builtin_sets, collect_default_documents

    assert [name for name, _ in builtin_sets()] == english_builtin_specialties()
    corpora = {source.corpus for source, _ in collect_default_documents(None, None)}
    assert corpora == {f"builtin-{name}" for name in english_builtin_specialties()}


# --- one folder per specialty -------------------------------------------------------------------------

EYE_QA = [
    ("Glaucoma", "diagnosis", "How is primary open-angle glaucoma diagnosed?",
     "By optic disc cupping with matching visual field loss, often with raised intraocular pressure."),
    ("Glaucoma", "treatment", "How is acute angle-closure glaucoma treated?",
     "Pressure-lowering drops and acetazolamide at once, then laser iridotomy of both eyes."),
    ("Cataract", "treatment", "When is cataract surgery offered?",
     "When the clouded lens limits daily life; phacoemulsification replaces it with an artificial lens."),
    ("Retinal detachment", "symptoms", "What are the warning signs of retinal detachment?",
     "New floaters, flashes of light and a curtain over part of the vision need same-day review."),
    ("Uveitis", "diagnosis", "What does anterior uveitis look like on slit lamp examination?",
     "Cells and flare in the anterior chamber, with a painful red eye, photophobia and a small pupil."),
    ("Conjunctivitis", "treatment", "Does bacterial conjunctivitis need antibiotic drops?",
     "Most cases settle within a week; drops shorten the course and suit severe or persistent cases."),
    ("Diabetic retinopathy", "screening", "Why do people with diabetes need retinal screening?",
     "Retinopathy causes no symptoms until late; yearly retinal photographs find it while laser helps."),
    ("Macular degeneration", "treatment", "How is wet age-related macular degeneration treated?",
     "Intravitreal anti-VEGF injections, repeated on a schedule guided by retinal imaging."),
]
EYE_QA_FR = [
    ("Glaucome", "Glaucoma", "Comment traite-t-on un glaucome aigu par fermeture de l'angle ?",
     "Par des collyres hypotonisants et de l'acétazolamide en urgence, puis une iridotomie au laser."),
]


def _write_folder(folder, files):
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def eye_specialty(tmp_path, monkeypatch):
    """A fake specialty (and its French variant) in a folder outside the package, added to the search roots."""
    from medlora.retrieval.translate import default_term_map
    from medlora.specialties import registry

    root = tmp_path / "specialties"
    meta = {"language": "en", "reviewed": "2026-01-01", "disclaimer": "Test data, not medical advice."}
    _write_folder(root / "ophthalmology", {
        "specialty.yaml": "label: Ophthalmology\nlanguage: en\nhpo_root: HP:0000478  # Abnormality of the eye\n",
        "terms.txt": "# eye terms\neye\nglaucoma\ncataract\nretina\nretinal\nuveitis\nconjunctivitis\n"
                     "intraocular pressure\n",
        "lexicon.txt": "tonometry\nfundoscopy\nslit lamp\nvisual acuity\n",
        "qa.jsonl": "".join(json.dumps({"focus": f, "category": c, "input": q, "output": a}) + "\n"
                            for f, c, q, a in EYE_QA),
        "qa.meta.json": json.dumps(meta),
    })
    _write_folder(root / "ophthalmology-fr", {
        "specialty.yaml": "label: Ophthalmology (French)\nlanguage: fr\n",
        "qa.jsonl": "".join(json.dumps({"focus": f, "focus_en": e, "category": "treatment", "input": q,
                                        "output": a}, ensure_ascii=False) + "\n" for f, e, q, a in EYE_QA_FR),
        "qa.meta.json": json.dumps({**meta, "language": "fr"}),
    })
    shipped = registry.search_roots()
    monkeypatch.setattr(registry, "search_roots", lambda: [*shipped, root])
    default_term_map.cache_clear()
    yield root
    default_term_map.cache_clear()


def test_a_new_folder_is_a_new_specialty(eye_specialty, tmp_path):
    from medlora.config import DataConfig
    from medlora.data.prepare import prepare_dataset
    from medlora.evaluation.vocabulary import build_vocabulary
    from medlora.retrieval.corpus import collect_default_documents
    from medlora.retrieval.translate import translate_terms
    from medlora.specialties import available_specialties, builtin_set_metadata, builtin_sets, specialties

    # The registry lists it, with its variant.
    eye = specialties()["ophthalmology"]
    assert (eye.label, eye.language, eye.hpo_root) == ("Ophthalmology", "en", "HP:0000478")
    assert "ophthalmology" in available_specialties() and "ophthalmology-fr" not in available_specialties()
    assert "ophthalmology" in english_builtin_specialties()
    assert {"ophthalmology", "ophthalmology-fr"} <= set(builtin_sets())
    assert language_variants("ophthalmology") == ["ophthalmology-fr"]
    assert split_variant("ophthalmology-fr") == ("ophthalmology", "fr")
    assert builtin_set_metadata("ophthalmology")["reviewed"] == "2026-01-01"

    # Its term list loads and selects records; the variant shares it.
    assert Specialty.load("ophthalmology").matching_terms(
        "Angle-closure glaucoma: raised intraocular pressure") == ["glaucoma", "intraocular pressure"]
    french = Specialty.load("ophthalmology-fr")
    assert french.terms == eye.terms and french.language == "fr" and french.base == "ophthalmology"

    # prepare reads its built-in set.
    report = prepare_dataset(DataConfig(specialty="ophthalmology", sources=["builtin"]), output_dir=tmp_path / "d")
    assert sum(report.split_counts.values()) == len(EYE_QA)

    # The vocabulary reads its HPO root and its lexicon.
    vocabulary = build_vocabulary("ophthalmology")
    assert vocabulary.counts["hpo HP:0000478"] > 100 and vocabulary.counts["curated lexicon"] == 4
    assert vocabulary.terms.get("tonometry") is True and vocabulary.terms.get("glaucoma") is True

    # The router learns it (questions, terms, lexicon, French variant) and routes to it.
    learned = training_questions("ophthalmology")
    assert {q for _, _, q, _ in EYE_QA} | {"glaucoma", "tonometry", EYE_QA_FR[0][2]} <= set(learned)
    router = build_router([("eyes", "ophthalmology"), ("skin", "dermatology")], threshold=0.3)
    assert router is not None and router.route("Sudden painful red eye with blurred vision").adapter == "eyes"

    # The retrieval index and the French→English term map include it.
    corpora = {source.corpus for source, _ in collect_default_documents(None, None)}
    assert "builtin-ophthalmology" in corpora and "builtin-ophthalmology-fr" not in corpora
    assert translate_terms("Traitement du glaucome") == ["treatment", "Glaucoma"]


@pytest.mark.parametrize(("folder", "files", "message"), [
    ("oncology", {"specialty.yaml": "label: Oncology\nhpo-root: HP:0002664\n", "terms.txt": "tumour\n"},
     "hpo-root"),
    ("oncology", {"specialty.yaml": "label: Oncology\n"}, "needs a terms.txt"),
    ("oncology", {"terms.txt": "tumour\n"}, "needs a specialty.yaml"),
    ("cardiology-fr", {"specialty.yaml": "label: Cardiologie\nlanguage: en\n"}, "'fr' variant of cardiology"),
    ("dermatology", {"specialty.yaml": "label: Dermatology\n", "terms.txt": "skin\n"}, "defined twice"),
    ("oncology", {"specialty.yaml": "label: Oncology\nlanguage: xx\n", "terms.txt": "tumour\n"}, "en, fr"),
])
def test_a_broken_folder_is_an_error_naming_it(tmp_path, monkeypatch, folder, files, message):
    from medlora.specialties import registry, specialties

    _write_folder(tmp_path / folder, files)
    shipped = registry.search_roots()
    monkeypatch.setattr(registry, "search_roots", lambda: [*shipped, tmp_path])
    with pytest.raises(MedloraError, match=message):
        specialties()


def test_shipped_folders_agree_with_their_sidecars_hpo_and_the_wheel():
    """Each fact is stated once, in specialty.yaml: the QA sidecars must not contradict it, its HPO root must
    exist, and every file of a folder must match pyproject's package-data, or a wheel would ship without it."""
    import fnmatch
    import tomllib
    from pathlib import Path

    from medlora.data.sources.hpo import hpo_terms
    from medlora.specialties import builtin_set_metadata, specialties

    assert set(specialties()) == {"cardiology", "dermatology", "dermatology-fr", "radiology"}
    ontology = hpo_terms()
    repo = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["medlora"]
    for name, entry in specialties().items():
        meta = builtin_set_metadata(name)
        assert (meta["language"], meta["specialty"]) == (entry.language, entry.base), name
        assert entry.hpo_root is None or entry.hpo_root in ontology, name
        assert entry.folder is not None
        for file in entry.folder.iterdir():
            relative = file.relative_to(repo / "medlora").as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not package data"
