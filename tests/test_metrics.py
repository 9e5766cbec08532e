"""Each evaluation metric on small hand-made cases with known answers, including the edge cases."""

from __future__ import annotations

import math
import time

import pytest

from medlora.data.records import QARecord
from medlora.evaluation.likelihood import OptionScore, choose, score_options
from medlora.evaluation.metrics import ALL_METRICS, EvalSample, get_metric
from medlora.evaluation.metrics.citations import judge, parse_citations
from medlora.evaluation.metrics.terminology import term_precision, term_recall
from medlora.evaluation.resources import lora_parameter_bytes, percentile, time_generation, time_variants
from medlora.evaluation.vignettes import build_vignettes, mentions_any, names_of, vignette_text
from medlora.evaluation.vocabulary import (
    Vocabulary,
    build_vocabulary,
    is_clinical_looking,
    load_vocabulary,
)
from medlora.retrieval import Source
from medlora.specialties import specialties


pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = Vocabulary.from_terms(
    specialty_terms=["melanoma", "basal cell carcinoma", "carcinoma", "psoriasis", "plaque", "Sjögren syndrome",
                     "atopic dermatitis", "beta-blocker", "fibrosis"],
    general_terms=["fever", "hypertension", "tachycardia"],
    name="test",
)


def _qa(reference: str, prediction: str, vocabulary: Vocabulary = VOCAB) -> EvalSample:
    return EvalSample(QARecord(question="q?", answer=reference, source="t"), prediction, {"vocabulary": vocabulary})


# --- vocabulary and terminology ---------------------------------------------------------------------------


def test_matching_is_whole_word_longest_first_case_and_hyphen_insensitive():
    found = [m.term for m in VOCAB.find("A Basal-Cell CARCINOMA, then melanomas; premelanoma is not a word.")]
    assert found == ["basal cell carcinoma", "melanoma"]  # longest first; plural folded; no partial words
    assert VOCAB.specialty_terms_in("beta blocker and Beta-Blockers") == {"beta blocker"}
    assert VOCAB.specialty_terms_in("fever and tachycardia") == set()  # general terms are not specialty terms


def test_matching_unicode():
    assert VOCAB.specialty_terms_in("SJÖGREN SYNDROME with ﬁbrosis") == {"sjögren syndrome", "fibrosis"}
    assert VOCAB.specialty_terms_in("Sjogren syndrome") == set()  # accents are not stripped
    assert VOCAB.find("") == [] and VOCAB.find("—!?") == []


def test_terminology_recall_known_values():
    ref = "Basal cell carcinoma and melanoma present as plaques."
    assert term_recall(VOCAB, ref, "It is a melanoma.") == pytest.approx(1 / 3)
    assert term_recall(VOCAB, ref, "melanoma, plaque and basal-cell carcinoma") == 1.0
    assert term_recall(VOCAB, ref, "") == 0.0  # empty answer
    assert term_recall(VOCAB, "No terms at all here.", "melanoma") is None  # nothing to recall: skipped
    metric = get_metric("terminology_recall")
    samples = [_qa(ref, "It is a melanoma."), _qa(ref, ""), _qa("nothing clinical", "melanoma")]
    assert metric.compute(samples) == pytest.approx((1 / 3 + 0.0) / 2)
    assert metric.compute([_qa("plain words", "plain")]) is None
    assert metric.compute([]) is None


def test_terminology_precision_known_values():
    assert term_precision(VOCAB, "Melanoma and dermatofibrositis were discussed.") == 0.5
    assert term_precision(VOCAB, "The diagnosis and prognosis of psoriasis.") == 1.0  # everyday words skipped
    assert term_precision(VOCAB, "") is None
    assert term_precision(VOCAB, "A simple sentence without jargon.") is None
    assert is_clinical_looking("xerodermatitis") and not is_clinical_looking("diagnosis")
    assert not is_clinical_looking("itis")  # too short
    metric = get_metric("terminology_precision")
    assert metric.compute([_qa("x", "melanoma and fakeomatosis"), _qa("x", "no jargon")]) == 0.5


def test_terminology_very_long_answer_is_fast_and_correct():
    long_text = ("melanoma " + "word " * 50) * 400  # ~20k words
    started = time.perf_counter()
    assert term_recall(VOCAB, "melanoma and psoriasis", long_text) == 0.5
    assert time.perf_counter() - started < 2.0


def test_terminology_needs_a_vocabulary():
    from medlora.errors import MedloraError

    with pytest.raises(MedloraError, match="vocabulary"):
        get_metric("terminology_recall").compute([EvalSample(QARecord("q", "melanoma", "t"), "melanoma")])


def test_hpo_dermatology_vocabulary_and_cache(tmp_path):
    derm = build_vocabulary("dermatology", medquad_dir=None)
    assert specialties()["dermatology"].hpo_root == "HP:0001574"
    assert derm.counts["hpo HP:0001574"] > 1000  # the root in specialty.yaml is the subtree the vocabulary read
    for term in ("abnormality of the integument", "alopecia", "pruritus", "cafe au lait spot"):
        assert derm.terms.get(term) is True, term
    assert derm.terms.get("tachycardia") is False  # general HPO phenotype, not dermatology
    assert "csu" not in derm.terms  # short abbreviations are left out
    assert any("lexicon" in key for key in derm.counts) or any("lexicon" in n for n in derm.notes)
    first = load_vocabulary("dermatology", None, cache_dir=tmp_path)
    assert list((tmp_path / "vocabulary").glob("dermatology-*.json"))
    assert load_vocabulary("dermatology", None, cache_dir=tmp_path) is first  # built once


# --- citations ------------------------------------------------------------------------------------------


def test_parse_citations():
    assert parse_citations("Use [1] and [3].") == [1, 3]
    assert parse_citations("See [1, 2] and [2-4], also [1][5].") == [1, 2, 3, 4, 5]
    assert parse_citations("No citations here, nor [a], nor [2019].") == []
    assert parse_citations("") == []
    assert parse_citations("[ 10 ] twice [10]") == [10]


def _cited(prediction: str, focus="Psoriasis", synonyms=(), cuis=("C0033860",)) -> EvalSample:
    record = QARecord(question="What is psoriasis?", answer="x", source="t", focus=focus, synonyms=list(synonyms),
                      cuis=list(cuis))
    retrieved = [
        Source("m:1", "Psoriasis", "", "text", focus="psoriasis", cuis=()),  # same focus after normalising
        Source("m:2", "Generalized pustular psoriasis", "", "text", focus="Generalized pustular psoriasis",
               cuis=("C0033860",)),  # shares the CUI
        Source("m:3", "Melanoma", "", "text", focus="Melanoma", cuis=("C0025202",)),
    ]
    return EvalSample(record, prediction, {"retrieved": retrieved})


def test_citation_judgement_and_metrics():
    j = judge(_cited("Plaques [1], pustules [2], unrelated [3], invented [7]."))
    assert (j.cited, j.relevant, j.invented) == (4, 2, 1)
    samples = [_cited("Plaques [1] [3]"), _cited("No citation at all."), _cited("Made up [9].")]
    assert get_metric("citation_relevance").compute(samples) == pytest.approx(1 / 3)
    assert get_metric("citation_coverage").compute(samples) == pytest.approx(2 / 3)
    assert get_metric("citations_invented").compute(samples) == 3 - 2
    assert get_metric("citations_invented").higher_is_better is False


def test_citation_edge_cases():
    none = [_cited(""), _cited("plain answer")]
    assert get_metric("citation_relevance").compute(none) is None  # no citations: not measurable
    assert get_metric("citation_coverage").compute(none) == 0.0
    assert get_metric("citations_invented").compute(none) == 0.0
    assert get_metric("citation_coverage").compute([]) is None
    no_sources = EvalSample(QARecord("q", "a", "t", focus="Psoriasis"), "See [1].", {"retrieved": []})
    assert judge(no_sources).invented == 1
    by_synonym = _cited("[3]", focus="Skin cancer", synonyms=["Melanoma"], cuis=())
    assert judge(by_synonym).relevant == 1


# --- diagnostic -----------------------------------------------------------------------------------------


def _vignette_sample(prediction: str, choice: int | None, answer_index: int = 0) -> EvalSample:
    record = QARecord(question="A patient presents with …", answer="Psoriasis", source="vignette",
                      focus="Psoriasis", synonyms=["Psoriasis vulgaris", "PSO"])
    return EvalSample(record, prediction, {"choice": choice, "answer_index": answer_index})


def test_diagnostic_metrics_known_values():
    samples = [
        _vignette_sample("The most likely diagnosis is psoriasis.", choice=0),
        _vignette_sample("Probably PSORIASIS VULGARIS", choice=1),
        _vignette_sample("", choice=0),  # empty answer: wrong in free text
        _vignette_sample("Psoriatic arthritis? no: eczema", choice=None),  # no options: not in MC
    ]
    assert get_metric("diagnostic_accuracy_mc").compute(samples) == pytest.approx(2 / 3)
    assert get_metric("diagnostic_accuracy_free").compute(samples) == pytest.approx(2 / 4)
    assert get_metric("diagnostic_accuracy_mc").compute([]) is None
    assert get_metric("diagnostic_accuracy_free").compute([]) is None
    # "PSO" (3 letters) counts as a name only as a whole word
    assert mentions_any("pso is the answer", ["PSO"]) and not mentions_any("psoas muscle", ["PSO"])


def test_names_and_masking():
    names = names_of("Carnitine palmitoyltransferase II (CPT II) deficiency", ["CPT2"])
    assert "CPT II" in names and "Carnitine palmitoyltransferase II deficiency" in names and "CPT2" in names
    answer = ("What are the signs and symptoms of Bartter syndrome? Bartter syndrome (BS) causes polyhydramnios, "
              "salt loss and failure to thrive. In Bartter's syndrome the kidneys waste potassium; "
              "Bartter described it. Signs and Symptoms Approximate number of patients (when available) "
              "Hypokalemia 90% Polyuria 50%")
    text = vignette_text(answer, names_of("Bartter syndrome", ["Bartter's syndrome", "BS"]))
    assert text is not None
    assert "bartter" not in text.lower() and "BS" not in text.split() and "?" not in text
    assert "polyhydramnios" in text and "Hypokalemia" in text and "%" not in text
    assert vignette_text("Too short.", ["X syndrome"]) is None
    long_answer = "Red scaly plaques on the elbows and knees with itching. " * 100
    assert len(vignette_text(long_answer, ["Psoriasis"], max_chars=300)) <= 302


def _symptom_record(focus: str, synonyms=(), cuis=(), qtype="symptoms") -> QARecord:
    return QARecord(question=f"What are the symptoms of {focus}?", source="medquad/test", focus=focus,
                    synonyms=list(synonyms), cuis=list(cuis), qtype=qtype,
                    answer=f"{focus} causes red scaly plaques, itching, nail pitting and joint pain in adults.")


def test_build_vignettes_seeded_and_distractors_never_gold():
    test = [_symptom_record("Psoriasis", ["Psoriasis vulgaris"], ["C1"]), _symptom_record("Rosacea"),
            _symptom_record("Vitiligo", qtype="treatment"), _symptom_record("Acne vulgaris")]
    pool = test + [_symptom_record(f) for f in ("Melanoma", "Urticaria", "Scabies", "Impetigo")] + [
        _symptom_record("psoriasis vulgaris"),  # a synonym of the gold: never a distractor
        _symptom_record("Plaque psoriasis", cuis=["C1"]),  # shares the gold CUI: never a distractor
    ]
    first = build_vignettes(test, pool, n=10, seed=7)
    assert [v.to_json() for v in first] == [v.to_json() for v in build_vignettes(test, pool, n=10, seed=7)]
    assert {v.focus for v in first} == {"Psoriasis", "Rosacea", "Acne vulgaris"}  # symptoms records only
    for v in first:
        assert len(v.options) == 4 and v.options[v.answer_index] == v.focus
        assert v.focus.lower() not in v.text.lower()
        if v.focus == "Psoriasis":
            assert not {"psoriasis vulgaris", "plaque psoriasis"} & {o.lower() for o in v.options}
    orders = {tuple(v.options) for seed in range(8) for v in build_vignettes(test, pool, 10, seed)
              if v.focus == "Rosacea"}
    assert len(orders) > 1  # the seed matters
    assert build_vignettes(test, pool, n=0) == [] and len(build_vignettes(test, pool, n=2)) == 2
    lonely = build_vignettes(test[:1], test[:1], n=1)
    assert lonely[0].options == [] and lonely[0].answer_index == -1  # nothing to choose from


@pytest.mark.shared_data
def test_vignettes_from_real_medquad(medquad_dir, tmp_path):
    from medlora.data.sources import medquad as medquad_source

    subsets = tmp_path / "medquad"  # links to a few small subsets keep this fast; nothing is copied
    subsets.mkdir()
    for name in ("1_CancerGov_QA", "5_NIDDK_QA", "8_NHLBI_QA_XML", "9_CDC_QA"):
        (subsets / name).symlink_to(medquad_dir / name, target_is_directory=True)
    records = [r for doc in medquad_source.iter_documents(subsets, errors=[])
               for r in medquad_source.document_records(doc)]
    vignettes = build_vignettes(records, records, n=40, seed=42)
    assert len(vignettes) == 40
    assert [v.focus for v in vignettes] == [v.focus for v in build_vignettes(records, records, n=40, seed=42)]
    for v in vignettes:
        assert not mentions_any(v.text, names_of(v.focus, v.gold)), v.focus
        assert "Human Phenotype Ontology" not in v.text and not v.text.startswith("What are")
        assert len(v.options) == 4 and v.options[v.answer_index] == v.focus
        assert v.question.startswith("A patient presents with") and v.question.endswith("most likely diagnosis?")


# --- multiple choice by log-likelihood --------------------------------------------------------------------


def test_choose_acc_norm():
    scores = [OptionScore(-10.0, 5), OptionScore(-12.0, 20), OptionScore(-3.0, 1)]
    assert choose(scores, normalise=False) == 2
    assert choose(scores) == 1  # -0.6 per character beats -2.0 and -3.0
    assert choose([OptionScore(-1.0, 1), OptionScore(-1.0, 1)]) == 0  # ties: first option


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_score_options_matches_a_single_sequence_forward(arch, tiny_llama_dir, tiny_t5_dir):
    from medlora.models.loading import load_base_model

    loaded = load_base_model(str(tiny_llama_dir if arch == "llama" else tiny_t5_dir))
    options = ["psoriasis", "basal cell carcinoma", "a"]
    prompt = "Question: A patient has silvery plaques. What is the most likely diagnosis?\nAnswer:"
    scores = score_options(loaded.model, loaded.tokenizer, loaded.spec, prompt, options)
    assert [s.chars for s in scores] == [len(o) for o in options]
    assert all(math.isfinite(s.loglikelihood) and s.loglikelihood < 0 for s in scores)
    # batching with padding must not change an option's score
    for option, batched in zip(options, scores, strict=True):
        alone = score_options(loaded.model, loaded.tokenizer, loaded.spec, prompt, [option])[0]
        assert alone.loglikelihood == pytest.approx(batched.loglikelihood, abs=1e-4)
    assert score_options(loaded.model, loaded.tokenizer, loaded.spec, prompt, []) == []


def _full_sequence_loglikelihood(model, context: list[int], cont: list[int]) -> float:
    """The reference: prompt + option as one sequence, no cache (how harnesses score an option)."""
    import torch

    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([context + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[len(context) - 1 + j, t] for j, t in enumerate(cont)))


@pytest.mark.parametrize("with_lora", [False, True])
def test_score_options_on_a_shared_cache_equals_full_sequences(with_lora, tiny_llama_dir):
    """Reading the prompt once (KV cache copied per option) scores exactly what one sequence per option does,
    for multi-token options, a one-token option, and through a PEFT-wrapped model (the adapter's run)."""
    from peft import LoraConfig, get_peft_model

    from medlora.models.loading import load_base_model

    loaded = load_base_model(str(tiny_llama_dir))
    model = loaded.model
    if with_lora:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    tok = loaded.tokenizer
    prompt = "Question: A patient has silvery plaques on the elbows. Diagnosis?\nAnswer:"
    options = ["psoriasis", "basal cell carcinoma", "Yes"]
    scores = score_options(model, tok, loaded.spec, prompt, options)
    context = tok(prompt)["input_ids"]
    for option, score in zip(options, scores, strict=True):
        cont = tok(" " + option, add_special_tokens=False)["input_ids"]
        assert score.loglikelihood == pytest.approx(_full_sequence_loglikelihood(model, context, cont), abs=1e-4)
    single = [o for o in ("Yes", "No") if len(tok(" " + o, add_special_tokens=False)["input_ids"]) == 1]
    if len(single) == 2:  # the one-pass path: no option longer than one token
        yes_no = score_options(model, tok, loaded.spec, prompt, single)
        for option, score in zip(single, yes_no, strict=True):
            cont = tok(" " + option, add_special_tokens=False)["input_ids"]
            assert score.loglikelihood == pytest.approx(_full_sequence_loglikelihood(model, context, cont),
                                                        abs=1e-4)


# --- latency and memory ---------------------------------------------------------------------------------


def test_resources_helpers(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model

    from medlora.models.loading import load_base_model

    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([1.0], 0.95) == 1.0
    loaded = load_base_model(str(tiny_llama_dir))
    stats = time_generation(loaded.model, loaded.tokenizer, loaded.spec, ["Question: a?\nAnswer:", "Q: b"], 5)
    assert stats["new_tokens_per_answer"] == 5  # fixed length: every variant does the same work
    assert 0 < stats["latency_p50_s"] <= stats["latency_p95_s"] and stats["tokens_per_s"] > 0
    assert time_generation(loaded.model, loaded.tokenizer, loaded.spec, [], 5) == {}
    assert lora_parameter_bytes(loaded.model) == 0
    peft = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    expected = sum(p.numel() * 4 for n, p in peft.named_parameters() if "lora_" in n)
    assert lora_parameter_bytes(peft) == expected > 0
    timings = time_variants({"base": (peft, peft.disable_adapter), "adapter": (peft, None)}, loaded.tokenizer,
                            loaded.spec, ["Q: a?", "Q: b?", "Q: c?"], 3)
    assert set(timings) == {"base", "adapter"} and all(t["new_tokens_per_answer"] == 3 for t in timings.values())
    peft.unload()


def test_all_metrics_registered_with_display():
    for name in ALL_METRICS:
        metric = get_metric(name)
        assert metric.display in {"score", "percent", "count"} and metric.task in {"qa", "vignette", "cited"}
    from medlora.config import EvaluationConfig

    assert EvaluationConfig().metrics == ALL_METRICS
