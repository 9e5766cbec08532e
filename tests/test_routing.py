"""adapter="auto": the TF-IDF + logistic-regression router, its threshold, and its held-out accuracy."""

from __future__ import annotations

import json

import pytest
from helpers import make_adapter

from medlora.config import MedloraConfig
from medlora.data.records import QARecord
from medlora.service.llm_service import LLMService
from medlora.service.routing import (
    BASE_LABEL,
    SpecialtyRouter,
    build_router,
    builtin_specialties,
    routing_accuracy,
    training_questions,
)

needs_builtin = pytest.mark.skipif(
    not {"dermatology", "cardiology", "radiology"} <= set(builtin_specialties()),
    reason="the built-in dermatology, cardiology and radiology QA sets are not in medlora/specialties",
)

SKIN = ["What causes an itchy skin rash?", "How is psoriasis of the skin treated?", "Is this mole a melanoma?"]
HEART = ["What causes chest pain from the heart?", "How is atrial fibrillation treated?", "What is heart failure?"]


def test_router_learns_and_respects_its_threshold():
    router = SpecialtyRouter.fit(SKIN + HEART, ["skin"] * 3 + ["heart"] * 3, threshold=0.5)
    assert router.labels == ["heart", "skin"]
    assert router.route("psoriasis plaques on the skin").adapter == "skin"
    assert router.route("heart rhythm and atrial fibrillation").adapter == "heart"
    decision = router.route("Qzx vrb plk")  # nothing known: about even odds
    assert abs(decision.probability - 0.5) < 0.1
    strict = SpecialtyRouter.fit(SKIN + HEART, ["skin"] * 3 + ["heart"] * 3, threshold=0.99)
    assert strict.route("psoriasis plaques on the skin").adapter is None  # not that sure: the base answers
    assert strict.route_many([]) == []


def test_base_label_is_never_an_adapter_and_single_class_routes_to_it():
    router = SpecialtyRouter.fit(SKIN + HEART, ["skin"] * 3 + [BASE_LABEL] * 3, threshold=0.5)
    assert router.adapters == ["skin"]
    assert router.route("How is atrial fibrillation of the heart treated?").adapter is None
    only = SpecialtyRouter.fit(SKIN, ["skin"] * 3)
    assert only.route("anything at all").adapter == "skin"


@needs_builtin
def test_routing_accuracy_dermatology_vs_cardiology():
    """Held-out by disease focus (seeded): questions about diseases the router never saw."""
    report = routing_accuracy(("dermatology", "cardiology"), test_fraction=0.3, seed=0, threshold=0.6)
    assert report.test_questions["dermatology"] >= 20 and report.test_questions["cardiology"] >= 20
    assert report.accuracy["dermatology"] > 0.8, report
    assert report.accuracy["cardiology"] > 0.8, report
    assert report.overall > 0.85, report


@needs_builtin
def test_single_adapter_router_sends_other_specialties_to_base():
    router = build_router([("derm", "dermatology")], threshold=0.6)
    assert router is not None and router.adapters == ["derm"]
    assert router.route("Is this itchy red rash with silvery scale psoriasis?").adapter == "derm"
    assert router.route("How are palpitations from atrial fibrillation treated?").adapter is None


def test_prepared_train_split_is_used(tmp_path):
    prepared = tmp_path / "processed" / "zoology"
    prepared.mkdir(parents=True)
    records = [QARecord(question=f"How is zorblax fever number {i} treated in the zorblax clinic?",
                        answer="Rest.", source="test") for i in range(5)]
    (prepared / "train.jsonl").write_text("\n".join(json.dumps(r.to_json()) for r in records) + "\n")
    questions = training_questions("zoology", prepared)
    assert len(questions) == 5
    router = build_router([("zoo", "zoology"), ("skin", "nonexistent")], threshold=0.5,
                          prepared_dir_template=str(tmp_path / "processed" / "{specialty}"))
    assert router is not None and "zoo" in router.labels and "skin" not in router.labels
    assert router.route("zorblax fever treatment").adapter == "zoo"
    assert build_router([("skin", "nonexistent")], threshold=0.5) is None


@needs_builtin
def test_service_auto_trains_its_router_from_the_loaded_adapters(tiny_llama_dir, tmp_path):
    adapters = tmp_path / "models"
    make_adapter(tiny_llama_dir, adapters / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(tiny_llama_dir, adapters / "lora-cardiology-adapter", "cardiology", seed=2)
    make_adapter(tiny_llama_dir, adapters / "lora-radiology-adapter", "radiology", seed=3)
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "models.llm.adapters_dir": str(adapters),
        "service.retrieval": False, "service.max_new_tokens": 4,
        "data.output_dir": str(tmp_path / "processed" / "{specialty}"),
    })
    service = LLMService(cfg)
    service.load_model()
    answers = service.answer_batch(
        ["How is acne vulgaris with comedones and pustules treated?",
         "What does an ECG show in an ST-elevation myocardial infarction?",
         "Can a patient with an eGFR of 25 receive gadolinium contrast for an MRI?"], ["auto", "auto", "auto"])
    assert [a.adapter for a in answers] == ["dermatology", "cardiology", "radiology"]
    assert all(a.route is not None and a.route.probability >= 0.6 for a in answers)

    service.unload_adapter("cardiology")  # the router is retrained: cardiology questions now go to base
    assert service.answer("What does an ECG show in an ST-elevation myocardial infarction?", "auto").adapter \
        == "base"


def test_a_missing_configured_adapter_says_what_exists_and_how_to_fix_it(tiny_llama_dir, tmp_path):
    from medlora.errors import MedloraError

    adapters = tmp_path / "models"
    make_adapter(tiny_llama_dir, adapters / "lora-dermatology-demo-adapter", "dermatology", seed=1)
    cfg = MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir), "models.llm.adapters_dir": str(adapters),
        "models.llm.use_medical_adapter": True,
        "models.llm.adapter_path": str(adapters / "lora-dermatology-adapter"), "service.retrieval": False,
    })
    with pytest.raises(MedloraError) as raised:
        LLMService(cfg).load_model()
    message = str(raised.value)
    assert "models.llm.adapter_path" in message and "lora-dermatology-demo-adapter" in message
    assert "use_medical_adapter: false" in message
    # Turned off, the adapters directory alone is served.
    service = LLMService(cfg.with_overrides({"models.llm.use_medical_adapter": False}))
    service.load_model()
    assert [a.name for a in service.list_adapters()] == ["dermatology"]


@needs_builtin
def test_french_questions_reach_specialties_that_have_english_questions_only():
    router = build_router([("dermatology", "dermatology"), ("cardiology", "cardiology"),
                           ("radiology", "radiology")], threshold=0.6)
    assert router is not None
    decisions = router.route_many(["Comment traiter une fibrillation atriale ?",
                                   "Quelle est la dose de rayonnement d'un scanner thoracique ?",
                                   "Diagnostic d'une lésion pigmentée asymétrique?"])
    assert [d.adapter for d in decisions] == ["cardiology", "radiology", "dermatology"]
