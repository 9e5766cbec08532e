"""``make bench`` end to end on a tiny random Llama: every section runs and renders (figures are not checked)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from medlora.config import MedloraConfig
from medlora.data.prepare import prepare_dataset

REPO_ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(REPO_ROOT / "bench"))


@pytest.fixture
def bench_modules(monkeypatch, tmp_path):
    import run_benchmarks

    monkeypatch.setattr(run_benchmarks, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    return run_benchmarks


def test_quick_bench_runs_every_section_on_a_tiny_model(bench_modules, tiny_llama_dir, qa_jsonl, tmp_path,
                                                        one_torch_thread):
    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    cfg = MedloraConfig().with_overrides({"data.specialty": str(terms), "data.sources": [str(qa_jsonl)]})
    prepare_dataset(cfg.data, output_dir=tmp_path / "data")
    sections = "precision,training,overhead,adapters,mixed,bot"
    args = argparse.Namespace(quick=True, sections=sections, model=str(tiny_llama_dir), data=str(tmp_path / "data"),
                              train_records=8, val_records=4, rounds=3, repeats=1,
                              no_doc=True, compare_bf16=True, render_only=False)
    report = bench_modules.run(args)
    results = report["results"]
    assert set(results) == set(sections.split(","))
    quality = results["precision"]["quality"]  # forced: on a tiny model bf16 costs nothing
    assert quality["prompts"] == 8 and 0 <= quality["greedy_identical"] <= 8
    assert abs(quality["loss_difference"]) < 0.1
    training = results["training"]
    assert training["baseline"]["computed_tokens"] == 8 * 512  # the note pads every example to 512
    assert training["baseline"]["real_tokens"] < training["baseline"]["computed_tokens"]
    assert training["medlora"]["batching"] == "packed" and training["speedup_tokens_per_s"] > 0
    overhead = results["overhead"]
    assert overhead["rounds"] == 3 and len(overhead["unmerged_vs_base"]["ci95"]) == 2
    assert set(results["adapters"]["tokens_per_s"]) == {"1", "2", "4"}
    assert results["adapters"]["lora_tensors_per_adapter_mb"] > 0
    assert results["bot"]["three_sources"]["prompt_tokens"] > results["bot"]["no_sources"]["prompt_tokens"]
    assert 1 <= results["bot"]["three_sources"]["sources"] <= 3  # the tiny model's short context trims sources
    table = bench_modules.render(report)
    for row in ("training tokens/s", "unmerged adapter", "mixed batch", "bot first token", "adapter load",
                "LoRA tensors"):
        assert row in table
    assert json.loads((tmp_path / "results" / "quick" / "training.json").read_text())["records"] == 8


def test_doc_block_is_replaced_and_the_prose_kept(bench_modules, tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nHand-written intro.\n", encoding="utf-8")
    bench_modules.update_doc("| table 1 |\n", doc)
    bench_modules.update_doc("| table 2 |\n", doc)
    text = doc.read_text()
    assert "Hand-written intro." in text and "| table 2 |" in text and "| table 1 |" not in text


def test_retrieval_bench_masks_the_split_and_counts_sources_about_the_condition(tmp_path):
    """bench/retrieval_quality.py: with the validation documents masked, only *another* document on the same
    condition can count, and when one exists it is found first."""
    import retrieval_quality
    from helpers import pipeline_config

    from medlora.data.prepare import load_split
    from medlora.data.records import QARecord
    from medlora.retrieval import SourceIndex, sources_from_records

    names = ["psoriasis", "eczema", "vitiligo", "scabies", "impetigo", "rosacea", "melasma", "urticaria", "lichen",
             "morphea", "pemphigus", "erysipelas", "cellulitis", "tinea", "alopecia", "acne", "warts", "lipoma",
             "keloid", "intertrigo"]
    pairs = [{"input": question.format(name), "focus": name.title(),
              "output": f"{name.title()} {answer} The clinic leaflet on {name} says more."}
             for name in names for question, answer in (("How is {} treated?", "is treated by a dermatologist."),
                                                          ("What causes {}?", "has several known causes."))]
    qa_jsonl = tmp_path / "pairs.jsonl"
    qa_jsonl.write_text("\n".join(json.dumps(p) for p in pairs) + "\n", encoding="utf-8")
    data_dir = tmp_path / "prepared"
    prepare_dataset(pipeline_config("unused-model", qa_jsonl, tmp_path).data, output_dir=data_dir)
    records = [r for split in ("train", "validation", "test") for r in load_split(data_dir, split)]
    validation = load_split(data_dir, "validation")
    assert validation
    alone = SourceIndex.build(sources_from_records(records, "medquad"))
    result = retrieval_quality.measure(alone, data_dir, 0.5, 0.0)
    assert result["questions"] == len(validation)
    assert result["shown"]["mean"] == 1.0
    assert result["hit@3"]["mean"] == 0.0  # its own pages are masked and no other document is about it
    # The bot's filter: no other condition's title is named by the question, so nothing is shown.
    assert retrieval_quality.measure(alone, data_dir, 2.0, 0.5)["shown"]["mean"] == 0.0

    twins = [QARecord(r.question, r.answer, "other-site", focus=r.focus, url=f"https://example.org/twin/{i}")
             for i, r in enumerate(validation)]
    with_twins = SourceIndex.build(sources_from_records([*records, *twins], "medquad"))
    for weight, min_match in ((0.0, 0.0), (2.0, 0.0), (2.0, 0.5)):
        measured = retrieval_quality.measure(with_twins, data_dir, weight, min_match)
        assert measured["shown"]["mean"] == 1.0 and measured["relevant@1"]["mean"] == 1.0
        # Each twin repeats its reference word for word: copying source [1] would score a perfect ROUGE-L.
        assert measured["copy@1"]["mean"] == pytest.approx(1.0)
        assert measured["best copy@3"]["mean"] == pytest.approx(1.0)
    assert result["copy@1"]["mean"] < 1.0 and result["best copy@3"]["mean"] >= result["copy@1"]["mean"]


def test_open_book_ceiling_composes_a_cited_fact_with_the_closed_book_answer(tmp_path):
    """bench/open_book_ceiling.py: the composed answer leads with source [1]'s first sentence (its "Title." lead
    dropped), questions shown no source are left out, and an open-book answer equal to its closed-book answer
    scores a zero delta."""
    import open_book_ceiling

    from medlora.retrieval import Source

    source = Source(source_id="hpo:1", title="Vohwinkel syndrome", url="", text="Vohwinkel syndrome. Vohwinkel "
                    "syndrome is inherited in an autosomal dominant pattern. Associated genes: GJB2.")
    assert open_book_ceiling.first_sentence(source) == ("Vohwinkel syndrome is inherited in an autosomal dominant "
                                                        "pattern.")
    reference = "Vohwinkel syndrome is inherited in an autosomal dominant pattern, caused by GJB2 variants."
    closed = "It is caused by GJB2 variants."

    def row(question, mode, prediction, sources=()):
        return {"variant": "adapter", "mode": mode, "question": question, "reference": reference,
                "prediction": prediction, "sources": [{"n": 1, "source_id": s} for s in sources]}

    rows = [row("Is Vohwinkel syndrome inherited?", "closed", closed),
            row("Is Vohwinkel syndrome inherited?", "open", closed, ["hpo:1"]),
            row("What else?", "closed", closed), row("What else?", "open", "No source.")]
    predictions = tmp_path / "variant.jsonl"
    predictions.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = open_book_ceiling.measure(predictions, {"hpo:1": source})
    assert result["actual"]["n"] == 1 and result["actual"]["mean"] == 0.0
    assert result["fact + closed, longer"]["mean"] > 0  # this source states the reference's fact


def test_reading_check_summary_separates_reading_from_saying_no():
    """An adapter that only says "No" more often keeps the base's AUC; one that reverses its reading does not."""
    from reading_check import render_markdown, summarize

    from medlora.evaluation.forgetting import auc

    truth = [0, 1] * 10
    reads = [[-1.0 if t == 0 else -4.0, -2.0] for t in truth]  # "Yes" more likely exactly on yes items
    shy = [[y - 5.0, n] for y, n in reads]  # the same ranking, "Yes" much less likely everywhere
    reversed_ = [[-4.0 if t == 0 else -1.0, -2.0] for t in truth]
    result = summarize({"base": reads, "shy": shy, "reversed": reversed_}, truth, seed=0)
    assert result["base"]["auc"]["mean"] == 1.0 and result["base_accuracy"] == 1.0
    shy_row, rev_row = result["adapters"]["shy"], result["adapters"]["reversed"]
    assert shy_row["auc"]["mean"] == 1.0 and shy_row["yes_rate"] == 0.0 and shy_row["accuracy"] == 0.5
    assert shy_row["changed"] == 0.5 and shy_row["delta"]["high"] < 0
    assert rev_row["auc"]["mean"] == 0.0 and rev_row["accuracy"] == 0.0
    assert auc([1.0, 1.0], [0, 1]) == 0.5
    assert "| `shy` | 50.0 % |" in render_markdown(result)


def test_reading_check_lora_scale_interpolates_between_base_and_adapter(tiny_llama_dir, one_torch_thread):
    """--scales: factor 0 answers as the base, 1 as the trained adapter, 0.5 halfway (LoRA is linear in its
    scaling, so the logits move by half the adapter's change on the first layer it touches)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from reading_check import set_lora_scale

    from medlora.models.loading import load_base_model

    loaded = load_base_model(str(tiny_llama_dir))
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        base = loaded.model(ids).logits
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["lm_head"], lora_dropout=0.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)

    def logits(factor: float) -> torch.Tensor:
        set_lora_scale(model, factor)
        with torch.no_grad():
            return model(ids).logits

    full = logits(1.0)
    assert not torch.allclose(full, base, atol=1e-4)
    assert torch.allclose(logits(0.0), base, atol=1e-5)
    assert torch.allclose(logits(0.5), (base + full) / 2, atol=1e-4)
    assert torch.allclose(logits(1.0), full, atol=1e-6)  # set, not multiplied: the factor does not compound


def test_topic_centred_auc_removes_a_bias_toward_asked_topics():
    """A model that says "Yes" more to one asked topic, which yes items ask more often, gets a plain AUC above
    0.5 without reading a word; centred on each topic's mean margin its AUC is 0.5."""
    from reading_check import render_markdown, summarize, topic_centred

    # topic "a" is asked on 3 yes items and 1 no item, topic "b" on 1 yes and 3 no
    topics = ["a", "a", "a", "a", "b", "b", "b", "b"]
    truth = [0, 0, 0, 1, 0, 1, 1, 1]
    biased = [[-1.0, -2.0] if t == "a" else [-2.0, -1.0] for t in topics]
    result = summarize({"base": biased, "biased": biased}, truth, seed=0, topics=topics)
    assert result["base"]["auc"]["mean"] == 0.75
    assert result["base"]["topic_centred_auc"]["mean"] == 0.5
    assert topic_centred([1.0, 3.0, 5.0], ["x", "x", "y"]) == [-1.0, 1.0, 0.0]
    assert "Topic-centred AUC" in render_markdown(result)
    assert "topic_centred_auc" not in summarize({"base": biased}, truth, seed=0)["base"]


def test_reading_check_rescore_rebuilds_the_draw_a_stored_run_names(abstracts_csv, tmp_path):
    """Files from before the topic-balanced draw carry no ``balanced_topics``: they are re-scored on the old draw,
    and runs of two draws are refused rather than summarised against the wrong truth."""
    from reading_check import rescore

    from medlora.evaluation.forgetting import build_reading_checks

    def stored(name: str, balanced: bool | None) -> Path:
        checks = build_reading_checks(abstracts_csv, 20, 3, balanced_topics=bool(balanced))
        run = {"checks": 20, "seed": 3, "truth": [c.answer_index for c in checks],
               "loglikelihoods": {"base": [[-1.0, -2.0]] * 20, name: [[-2.0, -1.0]] * 20}}
        if balanced is not None:
            run["balanced_topics"] = balanced
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(run), encoding="utf-8")
        return path

    old, new = stored("old", None), stored("new", True)
    rescore([old], abstracts_csv, tmp_path / "old_summary")
    assert json.loads((tmp_path / "old_summary.json").read_text())["balanced_topics"] is False
    rescore([new], abstracts_csv, tmp_path / "new_summary")
    summary = json.loads((tmp_path / "new_summary.json").read_text())
    assert summary["balanced_topics"] is True and summary["adapters"]["new"]["changed"] == 1.0
    assert "topic-balanced" in (tmp_path / "new_summary.md").read_text()
    rescore([tmp_path / "new_summary.json"], abstracts_csv, tmp_path / "again")  # a summary keeps its scores
    assert json.loads((tmp_path / "again.json").read_text())["adapters"] == summary["adapters"]
    with pytest.raises(SystemExit, match="other checks"):
        rescore([new, old], abstracts_csv, tmp_path / "mixed")
