"""A saved source index loads back to the same passages and the same search results."""

from __future__ import annotations

import json

import pytest
from helpers import make_index

from medlora.retrieval.index import SourceIndex, StoredSources


def test_saved_index_loads_the_same_sources_and_hits(tmp_path):
    built = make_index()
    built.save(tmp_path / "index")
    loaded = SourceIndex.load(tmp_path / "index")
    assert isinstance(loaded.sources, StoredSources)
    assert len(loaded.sources) == len(built.sources) and loaded.sources
    for question in ("How is psoriasis treated?", "What is atrial fibrillation?", "heart failure drugs"):
        assert loaded.search(question, 2) == built.search(question, 2)
    assert loaded.sources[-1] == built.sources[-1] and loaded.sources[1:3] == list(built.sources[1:3])
    assert list(loaded.sources) == list(built.sources)
    mask = loaded.mask(lambda s: s.title == "Psoriasis")
    assert mask is not None and mask.tolist() == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(IndexError):
        loaded.sources[len(built.sources)]


def test_an_index_whose_passages_do_not_match_its_documents_is_refused(tmp_path):
    make_index().save(tmp_path / "index")
    sources = tmp_path / "index" / "sources.jsonl"
    lines = sources.read_text(encoding="utf-8").splitlines()
    sources.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="3 passages for 4 indexed documents"):
        SourceIndex.load(tmp_path / "index")
    assert json.loads(lines[0])["source_id"] == "test:0"


def test_the_index_cache_is_rebuilt_when_the_snippet_length_changes(tmp_path, monkeypatch):
    """Passage texts are snippets: a cache built with another snippet length must not be reused."""
    from medlora.data import records
    from medlora.retrieval.corpus import _fingerprint

    inputs = [tmp_path]
    before = _fingerprint(inputs)
    assert _fingerprint(inputs) == before
    monkeypatch.setattr(records, "SNIPPET_CHARS", records.SNIPPET_CHARS + 100)
    assert _fingerprint(inputs) != before


def test_a_snippet_is_cut_at_a_word_within_the_limit():
    from medlora.data.records import SNIPPET_CHARS, snippet

    text = "Psoriasis is a chronic inflammatory skin disease. " * 20
    cut = snippet(text)
    assert cut.endswith(" …") and len(cut) <= SNIPPET_CHARS + 2
    assert text.startswith(cut[:-2]) and text[len(cut) - 2] == " "  # ends where a word ends
    assert snippet("Short passage.") == "Short passage."
