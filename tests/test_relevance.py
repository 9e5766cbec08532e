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


def _title_index(pairs):
    from medlora.retrieval import Source, SourceIndex

    filler = [(f"Other condition {i}", f"Unrelated text number {i} about the kidney and the liver.") for i in range(8)]
    return SourceIndex.build([(Source(source_id=f"t:{i}", title=t, url="", text=x[:60]), f"{t} {x}")
                              for i, (t, x) in enumerate([*pairs, *filler])])


def test_title_words_keep_what_names_a_condition():
    from medlora.retrieval.index import title_words

    assert title_words("What are the symptoms of Oculocutaneous albinism type 1B ?") == {
        "oculocutaneous", "albinism", "type", "1b"}
    assert title_words("How is vitiligo treated?") == {"vitiligo"}
    assert title_words("Oculocutaneous albinism type 3") == {"oculocutaneous", "albinism", "type", "3"}
    assert title_words("Is Crouzonodermoskeletal syndrome inherited?") == {"crouzonodermoskeletal"}
    assert title_words("Tietze syndrome") == {"tietze"}  # so it is no match for the question above


def test_rerank_prefers_the_subtype_the_question_names_over_a_sibling():
    """BM25 scored a sibling subtype above the subtype the question names (the validation scores below); the title
    similarity rerank puts the named one first: the digit that tells them apart counts."""
    from medlora.retrieval import Retrieved, Source
    from medlora.retrieval.index import TITLE_MATCH_WEIGHT, rerank_by_title, title_words

    def hit(title: str, score: float) -> Retrieved:
        return Retrieved(Source(source_id=title, title=title, url="", text=""), score)

    hits = [hit("Oculocutaneous albinism type 3", 21.27), hit("Oculocutaneous albinism type 2", 20.25),
            hit("Oculocutaneous albinism type 1B", 17.38)]
    question = title_words("What are the symptoms of Oculocutaneous albinism type 1B ?")
    reranked = rerank_by_title(hits, question, TITLE_MATCH_WEIGHT)
    assert reranked[0].source.title == "Oculocutaneous albinism type 1B"
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_min_title_match_shows_only_sources_the_question_names():
    """The bot's filter: a source whose title the question does not name is dropped, so a question may get fewer
    sources than asked, or none (then it is answered without sources)."""
    syndrome = ("Congenital deafness with vitiligo and achalasia",
                "Vitiligo patches and vitiligo of the hands with deafness and achalasia.")
    about = ("Vitiligo", "Vitiligo is an acquired loss of skin pigment in sharply bordered white patches.")
    index = _title_index([syndrome, about])
    unfiltered = index.search("How is vitiligo treated?", 3)
    assert len(unfiltered) == 2 and {h.source.title for h in unfiltered} == {syndrome[0], about[0]}
    kept = index.search("How is vitiligo treated?", 3, min_title_match=0.5)
    assert [h.source.title for h in kept] == ["Vitiligo"]  # the syndrome's title is named 1/4: dropped
    assert index.search("How are kidney stones of the liver treated?", 3) != []
    assert index.search("How are kidney stones of the liver treated?", 3, min_title_match=0.5) == []


def test_open_book_sources_follow_the_bots_minimum_title_match():
    from medlora.data.records import QARecord
    from medlora.evaluation.context import mode_sources

    syndrome = ("Congenital deafness with vitiligo and achalasia",
                "Vitiligo patches and vitiligo of the hands with deafness and achalasia.")
    index = _title_index([syndrome])
    record = QARecord(question="How is vitiligo treated?", answer="Topical steroids.", source="test", focus="Vitiligo")
    plain, _ = mode_sources([record], ["open"], index, 3, [])
    shown, notes = mode_sources([record], ["open"], index, 3, [], min_title_match=0.5)
    assert [s.title for s in plain["open"][0]] == [syndrome[0]]
    assert shown["open"] == [[]]
    assert any("0 of 1 questions were shown at least one source" in note for note in notes)


def test_inheritance_question_prefers_a_passage_that_states_a_pattern():
    """Two passages on the same condition, one with signs only (ranked first by BM25) and one that says how it is
    inherited: for "Is X inherited?" the answer-type rerank puts the one stating a pattern first; other questions
    and a weight of 0 keep BM25's order."""
    signs_only = ("Piebaldism", "Piebaldism piebaldism piebaldism: a white forelock and white skin patches.")
    states = ("Piebaldism", "Autosomal dominant: one changed copy of KIT in each cell causes it.")
    index = _title_index([signs_only, states])
    question = "Is piebaldism passed down in families?"
    assert index.search(question, 2, answer_type_weight=0.0)[0].source.text == signs_only[1][:60]
    first = index.search(question, 2)[0]
    assert first.source.text == states[1][:60]
    assert index.search("What are the signs of piebaldism?", 2)[0].source.text == signs_only[1][:60]


def test_inheritance_patterns_read_by_the_metric_and_the_rerank_alike():
    from medlora.data.inheritance import asks_inheritance, inheritance_patterns

    assert inheritance_patterns("It is inherited in an autosomal-recessive pattern.") == {"autosomal recessive"}
    assert inheritance_patterns("Most glioblastomas are not inherited.") == {"not inherited"}
    assert inheritance_patterns("A white forelock.") == set()
    assert asks_inheritance("How is Noonan syndrome inherited?")
    assert asks_inheritance("Is this condition passed down in families?")
    assert not asks_inheritance("How is vitiligo treated?")


def test_a_numbered_subtype_counts_as_named_by_its_parents_question():
    """"Is Griscelli syndrome inherited?" names "Griscelli syndrome type 2" but not "Meier-Gorlin syndrome" for
    Gorlin more than before: only subtype numbering is exempt from the bot's show-a-source filter."""
    from medlora.retrieval.index import names_title, title_words

    asked = title_words("Is Griscelli syndrome inherited?")
    assert names_title(asked, "Griscelli syndrome type 2", 0.5)
    assert names_title(asked, "Griscelli syndrome, 3", 0.5) and names_title(asked, "Griscelli syndrome IV", 0.5)
    assert not names_title(asked, "Griscelli syndrome type 2", 0.5, subtypes=False)  # round 8's rule: 1 of 3
    assert not names_title(asked, "Griscelli-like pigmentary disorder", 0.5)
    unnumbered = ("Griscelli syndrome", "Griscelli syndrome: silvery hair, partial albinism.")
    subtype = ("Griscelli syndrome type 2", "Inherited in an autosomal recessive pattern. Genes: RAB27A.")
    index = _title_index([unnumbered, subtype])
    shown = index.search("Is Griscelli syndrome inherited?", 2, min_title_match=0.5)
    assert [h.source.title for h in shown] == [subtype[0], unnumbered[0]]  # the one stating a pattern first
    old_rule = index.search("Is Griscelli syndrome inherited?", 2, min_title_match=0.5, subtypes=False)
    assert [h.source.title for h in old_rule] == [unnumbered[0]]
