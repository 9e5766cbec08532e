"""Loaders: JSON/JSONL pairs, MedQuAD XML, medical abstracts CSV — good input, bad input, real data."""

from __future__ import annotations

import json

import pytest

from medlora.data.records import QARecord, clean_text
from medlora.data.sources import abstracts, medquad
from medlora.data.sources.json_pairs import iter_json_pairs
from medlora.errors import DataFormatError
from medlora.specialties import Specialty

# ---- JSON / JSONL -----------------------------------------------------------------------------------


def test_json_array_and_jsonl_keep_extra_fields(tmp_path):
    pairs = [{"input": "What is acne?", "output": "A disorder of the pilosebaceous unit.", "focus": "Acne",
              "category": "diagnosis", "reviewer": "dr x"}]
    array, lines = tmp_path / "a.json", tmp_path / "a.jsonl"
    array.write_text(json.dumps(pairs))
    lines.write_text(json.dumps(pairs[0]) + "\n\n")
    for path in (array, lines):
        (record,) = list(iter_json_pairs(path))
        assert record.question == "What is acne?" and record.focus == "Acne" and record.qtype == "diagnosis"
        assert record.metadata == {"reviewer": "dr x"}


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "q1 long enough", "output": "a1"}\n{"input": "q2", "output": \n')
    with pytest.raises(DataFormatError) as err:
        list(iter_json_pairs(path))
    assert f"{path}:2" in str(err.value) and "invalid JSON" in str(err.value)


def test_json_array_missing_field_names_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"input": "q", "output": "a"}, {"input": "q only"}]))
    with pytest.raises(DataFormatError) as err:
        list(iter_json_pairs(path))
    assert "[record 1]" in str(err.value) and "'output'" in str(err.value)


def test_non_string_field_is_an_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"input": "q", "output": 42}) + "\n")
    with pytest.raises(DataFormatError, match="'output' must be a non-empty string"):
        list(iter_json_pairs(path))


def test_skip_invalid_collects_errors_instead_of_raising(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"input": "q", "output": "a"}\nnot json\n[1]\n{"input": "q2", "output": "a2"}\n')
    errors: list[DataFormatError] = []
    records = list(iter_json_pairs(path, errors=errors))
    assert len(records) == 2
    assert [e.location for e in errors] == [f"{path}:2", f"{path}:3"]


# ---- cleaning -----------------------------------------------------------------------------------------


def test_clean_text_unescapes_strips_tags_boilerplate_and_whitespace():
    raw = "Key Points  - Psoriasis &amp; <b>plaques</b>\n\n  (This list may not be complete.) end"
    assert clean_text(raw) == "Psoriasis & plaques end"


def test_dedupe_key_ignores_case_and_punctuation():
    a = QARecord("What is Acne?", "A skin disease.", "x")
    b = QARecord("what is acne", "a skin disease", "y")
    assert a.dedupe_key() == b.dedupe_key()


# ---- MedQuAD ------------------------------------------------------------------------------------------

_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<Document id="0001" source="GARD" url="https://example.org/psoriasis">
<Focus>Psoriasis</Focus>
<FocusAnnotations><UMLS><CUIs><CUI>C0033860</CUI></CUIs></UMLS>
<Synonyms><Synonym>Psoriasis vulgaris</Synonym></Synonyms></FocusAnnotations>
<QAPairs>
<QAPair pid="1"><Question qid="1-1" qtype="information">What is psoriasis ?</Question>
<Answer>Psoriasis is a chronic inflammatory skin disease with scaly plaques.</Answer></QAPair>
<QAPair pid="2"><Question qid="1-2" qtype="symptoms">What are the symptoms of psoriasis ?</Question>
<Answer></Answer></QAPair>
</QAPairs></Document>"""


def test_medquad_document_parses_and_counts_unanswered(tmp_path):
    (tmp_path / "2_GARD_QA").mkdir()
    (tmp_path / "2_GARD_QA" / "0001.xml").write_text(_DOC)
    stats = medquad.MedquadStats()
    (doc,) = list(medquad.iter_documents(tmp_path))
    records = list(medquad.document_records(doc, stats))
    assert [r.qtype for r in records] == ["information"]
    assert records[0].synonyms == ["Psoriasis vulgaris"] and records[0].cuis == ["C0033860"]
    assert records[0].license == "CC BY 4.0" and records[0].url == "https://example.org/psoriasis"
    assert stats.unanswered == 1 and stats.pairs == 1


def test_medquad_malformed_xml_names_the_file(tmp_path):
    (tmp_path / "1_X").mkdir()
    bad = tmp_path / "1_X" / "0002.xml"
    bad.write_text("<Document><Focus>x</Focus><QAPairs>")
    with pytest.raises(DataFormatError) as err:
        list(medquad.iter_documents(tmp_path))
    assert str(bad) in str(err.value) and "malformed XML" in str(err.value)


def test_medquad_empty_directory_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="no MedQuAD XML files"):
        list(medquad.iter_documents(tmp_path))


@pytest.mark.shared_data
def test_real_medquad_all_subsets_parse(medquad_dir):
    stats = medquad.MedquadStats()
    subsets = set()
    for doc in medquad.iter_documents(medquad_dir):
        subsets.add(doc.path.parent.name)
        for _ in medquad.document_records(doc, stats):
            pass
    assert len(subsets) == 12
    assert stats.pairs > 15000
    # The three MedlinePlus subsets have no answers by design: counted, not errors.
    assert all(stats.unanswered_by_subset[s] > 0 for s in medquad.SUBSETS_WITHOUT_ANSWERS)


# ---- abstracts ----------------------------------------------------------------------------------------


def test_abstract_conclusion_prefers_cued_sentences():
    body = "We studied 40 patients. Results were mixed. In conclusion, early excision improved survival. Done."
    assert abstracts.conclusion(body).startswith("In conclusion, early excision")


def test_abstracts_bad_header_and_bad_label(tmp_path):
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("label,text\n1,abc\n")
    with pytest.raises(DataFormatError, match="missing column"):
        list(abstracts.iter_abstracts(bad_header))
    bad_label = tmp_path / "b.csv"
    bad_label.write_text('condition_label,medical_abstract\nx,"Title. Body."\n')
    with pytest.raises(DataFormatError) as err:
        list(abstracts.iter_abstracts(bad_label))
    assert f"{bad_label}:2" in str(err.value)


@pytest.mark.shared_data
def test_real_abstracts_become_clinician_questions(abstracts_csv):
    rows = list(abstracts.iter_abstracts(abstracts_csv))
    assert len(rows) == 2888
    cardiology = Specialty("cardio-test", ("atrial fibrillation", "myocardial infarction"))
    records = list(abstracts.abstract_records(iter(rows), cardiology, "medical_abstracts"))
    assert len(records) > 20
    for record in records:
        assert record.focus in ("atrial fibrillation", "myocardial infarction")
        assert record.answer not in record.question  # the question does not echo the answer
        assert record.license == "CC BY-SA 3.0"
