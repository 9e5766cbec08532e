"""The specialty registry (one folder per specialty, language variants) and routing over three specialties."""

from __future__ import annotations

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
