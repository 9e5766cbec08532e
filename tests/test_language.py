"""Language identification, the language-match metrics, and French → English retrieval."""

from __future__ import annotations

import pytest

from medlora.data.language import UNKNOWN, detect_language
from medlora.data.prepare import builtin_dataset_path
from medlora.data.records import QARecord
from medlora.data.sources.json_pairs import iter_json_pairs
from medlora.evaluation.metrics import EvalSample, get_metric
from medlora.retrieval import SourceIndex
from medlora.retrieval.corpus import collect_default_documents
from medlora.retrieval.translate import (
    cross_language_relevance,
    expand_query,
    fold,
    read_term_map,
    translate_terms,
)

FR_Q = "Diagnostic d'une lésion pigmentée asymétrique ?"
EN_ANSWER = "An asymmetric pigmented lesion suggests melanoma and needs an excisional biopsy."
FR_ANSWER = "Une lésion pigmentée asymétrique évoque un mélanome et impose une exérèse pour histologie."


def test_detect_language_on_clinical_text():
    assert detect_language(FR_Q) == "fr"
    assert detect_language(EN_ANSWER) == "en"
    assert detect_language(FR_ANSWER) == "fr"
    assert detect_language("") == UNKNOWN and detect_language("42 / 7") == UNKNOWN


@pytest.mark.parametrize("name, expected", [("dermatology", "en"), ("dermatology-fr", "fr")])
def test_builtin_sets_are_written_in_their_declared_language(name, expected):
    records = list(iter_json_pairs(builtin_dataset_path(name)))
    share = sum(detect_language(r.answer) == expected for r in records) / len(records)
    assert share >= 0.97, share


def _sample(question: str, prediction: str, language: str | None = None) -> EvalSample:
    record = QARecord(question=question, answer="ref", source="t")
    if language:
        record.metadata["language"] = language
    return EvalSample(record=record, prediction=prediction)


def test_language_match_overall_and_per_language():
    samples = [
        _sample(FR_Q, FR_ANSWER),  # French asked, French answered
        _sample(FR_Q, EN_ANSWER),  # French asked, English answered: the failure the metric exists for
        _sample("What is an asymmetric pigmented lesion?", EN_ANSWER),
        _sample("Qu'est-ce que le psoriasis ?", "", language="fr"),  # empty answer: a mismatch
    ]
    assert get_metric("language_match").compute(samples) == pytest.approx(2 / 4)
    assert get_metric("language_match_fr").compute(samples) == pytest.approx(1 / 3)
    assert get_metric("language_match_en").compute(samples) == pytest.approx(1.0)
    assert get_metric("language_match_fr").compute(samples[2:3]) is None  # no French question: not measured


def test_declared_language_beats_the_identifier():
    # A very short question the identifier may misread; the record's declared language decides.
    sample = _sample("Psoriasis ?", FR_ANSWER, language="fr")
    assert get_metric("language_match").compute([sample]) == 1.0


def test_term_map_matching_is_accent_case_and_plural_insensitive():
    mapping = read_term_map(["# comment", "lésion pigmentée\tpigmented lesion", "lésion\tlesion",
                             "angio-œdème\tangioedema", "bad line without tab"])
    assert fold("Lésions PIGMENTÉES") == ("lesion", "pigmentee")
    assert translate_terms("Deux lésions pigmentées et une lésion", mapping) == ["pigmented lesion", "lesion"]
    assert translate_terms("les angio-oedèmes", mapping) == ["angioedema"]


def test_only_french_queries_are_expanded():
    assert expand_query("What is melanoma?") == "What is melanoma?"
    expanded = expand_query(FR_Q)
    assert expanded.startswith(FR_Q)
    added = expanded[len(FR_Q):]
    assert "pigmented lesion" in added and "asymmetric" in added and "diagnosis" in added


@pytest.fixture(scope="module")
def english_index():
    return SourceIndex.build(collect_default_documents(None, None))


def test_french_question_retrieves_english_sources_about_its_condition(english_index):
    titles = [r.source.title for r in english_index.search("Comment traiter un érysipèle de la jambe ?", k=3)]
    assert "Erysipelas" in titles
    plain = [r.source.title for r in english_index.search("Comment traiter un érysipèle ?", k=3, expand=False)]
    assert "Erysipelas" not in plain


def test_cross_language_relevance_improves_with_the_term_map(english_index):
    records = list(iter_json_pairs(builtin_dataset_path("dermatology-fr")))
    pairs = [(r.question, r.metadata["focus_en"]) for r in records]
    baseline = cross_language_relevance(english_index, pairs, expand=False)
    expanded = cross_language_relevance(english_index, pairs)
    assert baseline.questions == expanded.questions == len(pairs) >= 100
    assert expanded.hit_at_k > baseline.hit_at_k + 0.4, (baseline, expanded)
    assert expanded.hit_at_k >= 0.75, expanded


def test_a_french_inheritance_question_searches_as_one():
    """"héréditaire" brings "inherited" into the search, so BM25 matches English inheritance passages and the
    answer-type rerank (medlora.data.inheritance) treats the question as asking for a pattern."""
    from medlora.data.inheritance import asks_inheritance

    question = "Le piébaldisme est-il héréditaire ?"
    assert not asks_inheritance(question)
    assert "inherited" in expand_query(question).split()
    assert asks_inheritance(expand_query(question))
