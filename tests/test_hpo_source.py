"""HPO disease annotations as citable passages: parsing, merging, and their place in the default index."""

from __future__ import annotations

import pytest

from medlora.data.sources.hpo import (
    DiseaseAnnotation,
    iter_disease_annotations,
    merge_same_name,
    parse_frequency,
)
from medlora.data.inheritance import inheritance_patterns


def test_frequencies_from_terms_fractions_and_percentages():
    assert parse_frequency("HP:0040281") == pytest.approx(0.9)
    assert parse_frequency("1/4") == pytest.approx(0.25)
    assert parse_frequency("40%") == pytest.approx(0.4)
    assert parse_frequency("") is None and parse_frequency("often") is None and parse_frequency("1/0") is None


def test_passage_states_inheritance_genes_and_signs_by_frequency():
    inheritance = ("autosomal recessive", "typified by incomplete penetrance")
    signs = (("Ichthyosis", 0.9), ("Ectropion", 0.5), ("Cataract", 0.1))
    disease = DiseaseAnnotation("OMIM:1", "Example syndrome", inheritance, ("Congenital onset",), signs, ("ABCA12",))
    text = disease.passage()
    assert "Example syndrome is inherited in an autosomal recessive pattern (incomplete penetrance)." in text
    assert inheritance_patterns(text) == {"autosomal recessive"}  # the metric reads what the source says
    assert "Associated genes: ABCA12." in text and "Course: Congenital onset." in text
    assert text.index("Very frequent signs: Ichthyosis") < text.index("Frequent signs: Ectropion") \
        < text.index("Occasional signs: Cataract")
    assert DiseaseAnnotation("OMIM:2", "Empty", (), (), (), ()).passage() == ""


def test_same_disease_in_omim_and_orphanet_is_one_passage():
    orpha = DiseaseAnnotation("ORPHA:9", "Piebaldism", (), (), (("White forelock", 0.9),), ("KIT",))
    omim = DiseaseAnnotation("OMIM:9", "PIEBALDISM", ("autosomal dominant",), (), (("White forelock", 0.5),), ("KIT",))
    (merged,) = merge_same_name([omim, orpha])
    assert merged.disease_id == "ORPHA:9" and merged.also == ("OMIM:9",)
    assert merged.inheritance == ("autosomal dominant",) and merged.phenotypes == (("White forelock", 0.9),)


def test_bundled_annotations_read_offline():
    diseases = {d.name: d for d in merge_same_name(iter_disease_annotations())}
    assert len(diseases) > 5_000
    vohwinkel = diseases["Vohwinkel syndrome"]
    assert "autosomal dominant" in vohwinkel.inheritance and "GJB2" in vohwinkel.genes
    assert "Honeycomb palmoplantar hyperkeratosis" in vohwinkel.passage()


def test_hpo_passages_are_retrieved_for_a_disease_question(tmp_path):
    from medlora.retrieval.corpus import default_index

    index = default_index(tmp_path, medquad="", abstracts="")
    hits = index.search("Is Vohwinkel syndrome inherited?", 3)
    assert hits[0].source.corpus == "hpo" and hits[0].source.focus == "Vohwinkel syndrome"
    assert "autosomal dominant" in hits[0].source.text and hits[0].source.url.startswith("https://hpo.jax.org/")
    # A prompt heads the snippet "[n] Vohwinkel syndrome:"; the snippet does not repeat the name before its
    # own sentence names it (a small model looped on "<name>: <name>. <name> is ...").
    assert hits[0].source.text.startswith("Vohwinkel syndrome is inherited")
    assert default_index(tmp_path, medquad="", abstracts="", hpo=False).sources  # built-in sets remain
