"""One definition of "a source about the question's condition": metric, grounded training and leakage mask."""

from __future__ import annotations

import pytest

from medlora.data.records import QARecord
from medlora.evaluation.metrics.citations import is_relevant
from medlora.retrieval import Source, leakage_filter
from medlora.retrieval.relevance import about_condition, family_keys


@pytest.mark.parametrize(("focus", "source_focus"), [
    ("Crusted scabies", "Scabies"),  # the parent condition
    ("Pemphigus", "Pemphigus vulgaris"),  # a subtype
    ("Dermatomyositis", "Juvenile dermatomyositis"),
    ("Cold urticaria", "URTICARIA"),  # case and punctuation do not matter
])
def test_same_condition_subtype_or_parent_is_relevant(focus, source_focus):
    assert about_condition({"focus": source_focus}, focus)
    assert is_relevant({"focus": source_focus}, focus, [], [])


@pytest.mark.parametrize(("focus", "source_focus"), [
    ("Vitiligo", "Congenital deafness with vitiligo and achalasia"),  # a syndrome that includes it
    ("Cold urticaria", "Familial cold autoinflammatory syndrome"),
    ("Angelman syndrome", "1p36 deletion syndrome"),  # a generic head is not a condition
    ("Oral squamous cell carcinoma", "Basal cell carcinoma"),
    ("Moles", "Melanoma"),
])
def test_other_conditions_are_not_relevant(focus, source_focus):
    assert not about_condition({"focus": source_focus}, focus)


def test_synonyms_and_cuis_count():
    source = Source("s", "Melasma", "", "text", focus="Melasma", synonyms=("Chloasma",))
    assert about_condition(source, "Chloasma")
    assert about_condition({"focus": "X", "cuis": ["C1"]}, "Y", cuis=["C1"])
    assert "syndrome" not in family_keys("Angelman syndrome")


def test_leakage_mask_hides_subtypes_and_parents_of_held_out_conditions():
    held_out = [QARecord("What is crusted scabies?", "An infestation.", "test", focus="Crusted scabies",
                         url="https://example.org/crusted-scabies")]
    exclude = leakage_filter(held_out)

    def source(focus, synonyms=()):
        return Source(focus, focus, "", "text", focus=focus, document=focus, synonyms=synonyms)

    assert exclude(source("Scabies")) and exclude(source("Norwegian scabies", ("Crusted scabies",)))
    assert not exclude(source("Scabies incognito syndrome with deafness")) and not exclude(source("Impetigo"))
