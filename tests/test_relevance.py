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
    # OMIM/Orphanet's inverted names, read in reading order
    ("Epidermolysis bullosa with pyloric atresia", "Epidermolysis bullosa, junctional, with pyloric atresia"),
    ("X-linked hypohidrotic ectodermal dysplasia", "Ectodermal dysplasia 1, hypohidrotic, X-linked"),
    ("Seborrheic keratosis", "Keratosis, seborrheic, somatic"),
    ("Lamellar ichthyosis", "Ichthyosis, lamellar, 2"),
    ("Oculocutaneous albinism", "Albinism, oculocutaneous, type II"),
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
    ("Vitiligo", "Deafness, congenital, with vitiligo and achalasia"),  # inverted, still a joined name
    ("Alopecia", "Alopecia, epilepsy, pyorrhea, mental subnormality"),  # a list of features, not modifiers
    ("Achalasia", "Congenital deafness with vitiligo and achalasia"),  # the joined part is never a parent
    ("Oculocutaneous albinism type 1B", "Oculocutaneous albinism type 3"),  # sibling subtypes
])
def test_other_conditions_are_not_relevant(focus, source_focus):
    assert not about_condition({"focus": source_focus}, focus)


def test_reading_order_of_inverted_names():
    from medlora.retrieval.relevance import reading_order

    assert reading_order("Epidermolysis bullosa, junctional, with pyloric atresia") == \
        "junctional Epidermolysis bullosa with pyloric atresia"
    assert reading_order("Ectodermal dysplasia 1, hypohidrotic, X-linked") == \
        "X-linked hypohidrotic Ectodermal dysplasia 1"
    assert reading_order("Albinism, oculocutaneous, type II") == "oculocutaneous Albinism type II"
    for unchanged in ("Vitiligo", "Alopecia, epilepsy, pyorrhea, mental subnormality", "Acne, "):
        assert reading_order(unchanged) == unchanged


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
    # An inverted OMIM name of a held-out condition is hidden too; the held-out name may be inverted as well.
    inverted = leakage_filter([QARecord("Is it inherited?", "Yes.", "test", focus="Ichthyosis, lamellar, 2",
                                        url="https://example.org/li2"),
                               QARecord("What is it?", "A blistering disease.", "test",
                                        focus="Epidermolysis bullosa with pyloric atresia",
                                        url="https://example.org/eb-pa")])
    assert inverted(source("Lamellar ichthyosis"))
    assert inverted(source("Epidermolysis bullosa, junctional, with pyloric atresia"))
    assert not inverted(source("Epidermolysis bullosa simplex")) and not inverted(source("Ichthyosis vulgaris"))


def test_title_match_rerank_puts_the_source_about_the_condition_first():
    """A long passage that names the condition often outranks the short one *about* it under plain BM25; the
    title-match rerank (the bot's default) puts the one whose title the question names first."""
    from medlora.retrieval import Source, SourceIndex

    syndrome = ("Congenital deafness with vitiligo and achalasia",
                "Vitiligo patches and vitiligo of the hands with deafness and achalasia.")
    about = ("Vitiligo", "Vitiligo is an acquired loss of skin pigment in sharply bordered white patches.")
    filler = [(f"Other condition {i}", f"Unrelated text number {i} about the kidney and the liver.") for i in range(8)]
    index = SourceIndex.build([(Source(source_id=f"t:{i}", title=t, url="", text=x[:60]), f"{t} {x}")
                               for i, (t, x) in enumerate([syndrome, about, *filler])])
    question = "How is vitiligo treated?"
    plain = [h.source.title for h in index.search(question, 2, title_weight=0.0)]
    reranked = index.search(question, 2)
    assert plain[0] == syndrome[0]
    assert reranked[0].source.title == "Vitiligo"
    assert reranked[0].score >= reranked[1].score
    assert len(index.search(question, 1)) == 1  # k is honoured after reranking a larger pool
