"""Training rows: loss on answer tokens only, and cited rows that teach the bot's [n] convention."""

from __future__ import annotations

import re

from conftest import make_pairs
from transformers import AutoConfig

from medlora.data.records import QARecord
from medlora.models.architecture import describe_model
from medlora.training.encoding import IGNORE_INDEX, cite_in_answer, encode_record, with_cited_sources


def _records(n=12):
    return [QARecord(p["input"], p["output"], "test", focus=p["focus"]) for p in make_pairs(n)]


def test_loss_only_on_answer_tokens_for_causal_models(tiny_tokenizer, tiny_llama_dir):
    spec = describe_model(AutoConfig.from_pretrained(tiny_llama_dir))
    row = encode_record(tiny_tokenizer, spec, "What is psoriasis?", "A chronic plaque disease.", 64)
    labels, ids = row["labels"], row["input_ids"]
    prompt_len = labels.count(IGNORE_INDEX)
    assert prompt_len > 0 and len(labels) == len(ids)
    assert labels[prompt_len:] == ids[prompt_len:]
    assert ids[-1] == tiny_tokenizer.eos_token_id  # the model learns to stop
    assert "A chronic plaque disease." in tiny_tokenizer.decode(ids[prompt_len:], skip_special_tokens=True)


def test_seq2seq_labels_are_the_answer(tiny_tokenizer, tiny_t5_dir):
    spec = describe_model(AutoConfig.from_pretrained(tiny_t5_dir))
    row = encode_record(tiny_tokenizer, spec, "What is psoriasis?", "A chronic plaque disease.", 64)
    assert IGNORE_INDEX not in row["labels"]
    assert tiny_tokenizer.decode(row["labels"], skip_special_tokens=True) == "A chronic plaque disease."


def test_cited_rows_include_own_document_and_cite_it():
    records = _records()
    rows = with_cited_sources(records, fraction=1.0, seed=0)
    for record, sources, answer in rows:
        assert len(sources) == 3
        (cited,) = {int(n) for n in re.findall(r"\[(\d)\]", answer)}
        number, title, _ = sources[cited - 1]
        assert number == cited and title == record.focus
        other_titles = [t for n, t, _ in sources if n != cited]
        assert record.focus not in other_titles  # distractor sources are other diseases
    assert with_cited_sources(records, 1.0, seed=0) == rows  # seeded
    plain = with_cited_sources(records, fraction=0.0, seed=0)
    assert all(not sources and answer == r.answer for r, sources, answer in plain)


def test_cite_in_answer_places_the_marker_after_the_first_sentence():
    assert cite_in_answer("Psoriasis is chronic. It has plaques.", 2) == "Psoriasis is chronic [2]. It has plaques."
    assert cite_in_answer("Lesions > 6 mm (e.g. larger). Next.", 1) == "Lesions > 6 mm (e.g. larger) [1]. Next."
    assert cite_in_answer("no sentence end", 3) == "no sentence end [3]"
