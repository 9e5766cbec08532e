"""The evaluation pipeline on a tiny random model: reports (incl. the HTML with embedded PNGs), the model
card, determinism, the adapter x specialty matrix, and the quality gate both ways (library and CLI).

The model is random, so these tests check mechanics and bookkeeping, never quality.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from medlora.config import MedloraConfig
from medlora.data.records import QARecord
from medlora.evaluation.bootstrap import Delta
from medlora.evaluation.context import build_context
from medlora.evaluation.evaluate import evaluate_adapter
from medlora.evaluation.gate import check_gate
from medlora.evaluation.matrix import evaluate_matrix
from medlora.evaluation.metrics import ALL_METRICS
from medlora.evaluation.vocabulary import Vocabulary
from medlora.retrieval import SourceIndex, document_key, sources_from_records


pytestmark = pytest.mark.usefixtures("one_torch_thread")

DERMATOLOGY = [  # focus, synonyms, CUIs, findings
    ("Psoriasis", ["Psoriasis vulgaris"], ["C0033860"], "red scaly plaques with silvery scale on the elbows and knees, "
     "nail pitting and itching"),
    ("Rosacea", [], ["C0035854"], "facial erythema, flushing, papules and pustules on the cheeks and telangiectasia"),
    ("Vitiligo", [], ["C0042900"], "depigmented white macules on the hands and face that slowly enlarge"),
    ("Melanoma", ["Malignant melanoma"], ["C0025202"], "an asymmetric pigmented lesion with an irregular border"),
    ("Urticaria", ["Hives"], ["C0042109"], "itchy raised wheals that come and go within a day"),
    ("Scabies", [], ["C0036262"], "intense itching at night and burrows between the fingers"),
    ("Impetigo", [], ["C0021099"], "honey-colored crusts around the nose and mouth of children"),
    ("Acne vulgaris", ["Acne"], ["C0001144"], "comedones, papules and pustules on the face and back"),
]
CARDIOLOGY = [
    ("Atrial fibrillation", ["AF"], ["C0004238"], "an irregularly irregular pulse, palpitations and fatigue"),
    ("Heart failure", [], ["C0018801"], "dyspnea on exertion, orthopnea and ankle edema"),
    ("Pericarditis", [], ["C0031046"], "sharp chest pain relieved by sitting forward and a friction rub"),
    ("Aortic stenosis", [], ["C0003507"], "exertional syncope, angina and a crescendo-decrescendo murmur"),
    ("Endocarditis", [], ["C0014118"], "fever, a new murmur and splinter hemorrhages"),
    ("Myocarditis", [], ["C0027059"], "chest pain and heart failure after a viral illness"),
]
TERMS = ["plaque", "scale", "erythema", "papule", "pustule", "telangiectasia", "macule", "wheal", "comedone",
         "psoriasis", "rosacea", "vitiligo", "melanoma", "urticaria", "itching", "dyspnea", "orthopnea", "edema",
         "murmur", "syncope", "angina", "palpitations", "atrial fibrillation", "heart failure"]


def _records(diseases) -> list[QARecord]:
    out = []
    for focus, synonyms, cuis, findings in diseases:
        common = {"focus": focus, "synonyms": synonyms, "cuis": cuis, "source": "medquad/test",
                  "url": f"https://example.org/{focus.replace(' ', '-').lower()}", "license": "CC BY 4.0"}
        out.append(QARecord(question=f"What are the symptoms of {focus} ?", qtype="symptoms",
                            answer=f"What are the signs and symptoms of {focus}? {focus} causes {findings}. "
                                   "Symptoms often start in young adults and may come and go over years.", **common))
        out.append(QARecord(question=f"What are the treatments for {focus} ?", qtype="treatment",
                            answer=f"Treatment of {focus} depends on severity and includes topical or systemic "
                                   "therapy with regular follow-up.", **common))
    return out


def _write_data(directory: Path, specialty: str, diseases) -> Path:
    records = _records(diseases)
    test_foci = {d[0] for d in diseases[:3]}
    splits = {"test": [r for r in records if r.focus in test_foci],
              "train": [r for r in records if r.focus not in test_foci], "validation": []}
    directory.mkdir(parents=True, exist_ok=True)
    for name, items in splits.items():
        (directory / f"{name}.jsonl").write_text(
            "".join(json.dumps(r.to_json()) + "\n" for r in items), encoding="utf-8")
    manifest = {"specialty": specialty, "dataset_hash": f"hash-{specialty}", "sha256": {"test": "0" * 64},
                "sources": [{"spec": "medquad:test", "records": len(records), "license": "CC BY 4.0"}]}
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return directory


def _make_adapter(model_dir: Path, out: Path, specialty: str, seed: int) -> Path:
    """A LoRA adapter with non-zero random B matrices (so it changes the model), a card and a loss curve."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from medlora.adapters.metadata import write_metadata
    from medlora.training.trainer import save_loss_curve

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft.save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(model_dir)
    (out / "adapter_config.json").write_text(json.dumps(config))
    write_metadata(out, {"specialty": specialty, "base_model": {"id": str(model_dir)}})
    save_loss_curve([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "eval_loss": 2.5},
                     {"step": 2, "eval_loss": 2.4}], out / "loss_curve.png")
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("evaluation")
    _write_data(root / "data" / "dermatology", "dermatology", DERMATOLOGY)
    _write_data(root / "data" / "cardiology", "cardiology", CARDIOLOGY)
    _make_adapter(tiny_llama_dir, root / "lora-dermatology", "dermatology", seed=1)
    _make_adapter(tiny_llama_dir, root / "lora-cardiology", "cardiology", seed=2)
    return root


@pytest.fixture(scope="module")
def loaded(tiny_llama_dir):
    from medlora.models.loading import load_base_model

    return load_base_model(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def index():
    return SourceIndex.build(sources_from_records(_records(DERMATOLOGY + CARDIOLOGY), "medquad"))


def _cfg(tiny_llama_dir, **overrides) -> MedloraConfig:
    return MedloraConfig().with_overrides({
        "models.llm.name": str(tiny_llama_dir),
        "evaluation.max_new_tokens": 8, "evaluation.batch_size": 4,
        "evaluation.vignettes": 3, "evaluation.vignette_max_new_tokens": 6,
        "evaluation.latency_samples": 2, "evaluation.latency_max_new_tokens": 4,
        "evaluation.medquad_dir": "", "evaluation.abstracts_csv": "", "evaluation.hpo_sources": False,
        "evaluation.bootstrap_resamples": 200,
        "evaluation.outside": False, "evaluation.note_cases": False,
        **overrides,
    })


VOCAB = Vocabulary.from_terms(TERMS, name="test")
QA_METRICS = [m for m in ALL_METRICS if not m.startswith(("citation", "diagnostic"))]
KEYS = ([f"{m}@{mode}" for m in QA_METRICS for mode in ("closed", "open")]
        + [f"{m}@open" for m in ALL_METRICS if m.startswith("citation")] + ["diagnostic_accuracy_mc",
                                                                            "diagnostic_accuracy_free"])


def _png_payloads(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_tiny_evaluate_writes_all_reports(tiny_llama_dir, workspace, loaded, index, tmp_path):
    cfg = _cfg(tiny_llama_dir)
    adapter_dir = workspace / "lora-dermatology"
    report = evaluate_adapter(cfg, workspace / "data" / "dermatology", adapter_dir, tmp_path / "reports",
                              loaded=loaded, vocabulary=VOCAB, index=index)

    assert report.counts == {"qa": 6, "vignettes": 3, "qa_closed": 6, "qa_open": 6}
    for variant in ("base", "adapter"):
        values = report.variants[variant]
        assert set(KEYS) <= set(values)
        assert not any(k.startswith("citation") and k.endswith("@closed") for k in values)  # no sources, no citations
        for name in KEYS:
            assert values[name] is None or values[name] >= 0
            if not name.startswith("citations_invented") and values[name] is not None:
                assert values[name] <= 1
        assert values["terminology_recall@closed"] is not None  # the references hold vocabulary terms
        assert values["diagnostic_accuracy_mc"] is not None and values["citation_coverage@open"] is not None
        assert values["citations_invented@open"] == 0  # decoding never cites outside 1..k
        assert values["latency_mean_s"] > 0
    for key in ("bleu@closed", "rouge_l@open", "diagnostic_accuracy_mc"):
        interval = report.intervals[key]
        assert interval.low <= interval.delta <= interval.high and interval.n > 0
        assert interval.delta == pytest.approx(report.variants["adapter"][key] - report.variants["base"][key])

    resources = report.resources
    for variant in ("base", "adapter", "merged"):
        assert resources[variant]["new_tokens_per_answer"] == 4 and resources[variant]["answers"] == 2
    lora_bytes = sum(p.numel() * 4 for n, p in _lora_params(adapter_dir))
    assert resources["memory"]["adapter_parameter_bytes"] == lora_bytes
    assert "adapter_latency_overhead_pct" in resources["summary"]
    stages = resources["stage_seconds"]
    assert set(stages) == {"base: questions and vignettes", "adapter: questions and vignettes",
                           "base: outside checks and note cases", "adapter: outside checks and note cases",
                           "latency timing"} and all(seconds > 0 for seconds in stages.values())

    out = tmp_path / "reports"
    data = json.loads((out / "report.json").read_text())
    assert data["expected"]["bleu"] == {"base": 0.42, "adapter": 0.68}
    assert data["expected_label"] == "the note's expectations for Flan-T5-XL"
    assert data["evaluation_data"]["vignettes"] == 3 and data["evaluation_data"]["dataset_hash"] == "hash-dermatology"
    assert len(data["vignette_examples"]) == 3 and len(data["cited_examples"]) == 3
    assert set(data["intervals"]["rouge_l@closed"]) == {"delta", "low", "high", "n"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 * (2 * 6 + 3)  # base and adapter: 6 questions in 2 modes + 3 vignettes
    assert {(p["variant"], p["mode"]) for p in predictions} >= {("base", "closed"), ("adapter", "open")}
    markdown = (out / "report.md").read_text()
    assert "Flan-T5-XL" in markdown and "0.42 → 0.68" in markdown and "45 % → 87 %" in markdown
    assert "Evaluation time: base: questions and vignettes" in markdown
    html = (out / "report.html").read_text()
    pngs = _png_payloads(html)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)  # chart + loss curve
    assert pngs[1] == (adapter_dir / "loss_curve.png").read_bytes()
    assert "<script" not in html and "http" not in html.split("<body>")[0]  # self-contained

    card = (adapter_dir / "README.md").read_text()
    assert "Medical terminology (recall)" in card and "Evaluation data" in card and "Latency and memory" in card
    assert torch.count_nonzero(next(p for n, p in loaded.model.named_parameters() if "q_proj" in n)) > 0
    assert not any("lora_" in n for n, _ in loaded.model.named_parameters())  # base handed back untouched

    again = evaluate_adapter(cfg, workspace / "data" / "dermatology", adapter_dir, tmp_path / "again",
                             loaded=loaded, vocabulary=VOCAB, index=index)
    for variant in ("base", "adapter"):  # same seed, same data → same numbers
        assert {m: again.variants[variant][m] for m in KEYS} == {m: report.variants[variant][m] for m in KEYS}
    assert again.intervals == report.intervals


def _lora_params(adapter_dir: Path):
    from safetensors.torch import load_file

    return list(load_file(str(adapter_dir / "adapter_model.safetensors")).items())


def test_context_vignettes_come_from_the_test_split_only(tiny_llama_dir, workspace, index):
    cfg = _cfg(tiny_llama_dir, **{"evaluation.vignettes": 50})
    data_dir = workspace / "data" / "dermatology"
    ctx = build_context(cfg, data_dir, ALL_METRICS, vocabulary=VOCAB, index=index)
    test_foci = {d[0] for d in DERMATOLOGY[:3]}
    assert {v.focus for v in ctx.vignettes} == test_foci
    distractors = {o for v in ctx.vignettes for o in v.options} - test_foci
    assert distractors and distractors <= {d[0] for d in DERMATOLOGY}  # same specialty's foci
    assert all(len(sources) <= cfg.evaluation.citation_top_k for sources in ctx.modes["open"])
    again = build_context(cfg, data_dir, ALL_METRICS, vocabulary=VOCAB, index=index)
    assert [v.to_json() for v in again.vignettes] == [v.to_json() for v in ctx.vignettes]
    assert again.modes == ctx.modes
    nothing = build_context(_cfg(tiny_llama_dir, **{"evaluation.vignettes": 0, "evaluation.modes": ["closed"]}),
                            data_dir, ["bleu"])
    assert nothing.vignettes == [] and list(nothing.modes) == ["closed"] and nothing.vocabulary is None


def test_open_book_never_shows_a_document_of_the_evaluated_split(tiny_llama_dir, workspace, index):
    # Every hit shown (no title filter), so the mask alone decides what open-book can show.
    cfg = _cfg(tiny_llama_dir, **{"evaluation.modes": ["closed", "open", "kb"], "service.min_source_match": 0.0})
    ctx = build_context(cfg, workspace / "data" / "dermatology", ["rouge_l"], index=index)
    test_documents = {document_key(r) for r in ctx.records}
    shown_open = {s.document for sources in ctx.modes["open"] for s in sources}
    shown_kb = {s.document for sources in ctx.modes["kb"] for s in sources}
    assert shown_open and not shown_open & test_documents
    assert shown_kb & test_documents  # the knowledge-base mode is the bot's full index: the mask made the difference


def test_check_gate_both_ways():
    variants = {"base": {"bleu": 0.10, "rouge_l": 0.20, "citations_invented": 4.0, "citation_relevance": None},
                "adapter": {"bleu": 0.15, "rouge_l": 0.20, "citations_invented": 1.0, "citation_relevance": 0.5}}
    assert check_gate(variants, {"bleu": 0.05, "rouge_l": 0.0, "citations_invented": 3.0}).passed
    result = check_gate(variants, {"bleu": 0.06, "citations_invented": 4.0, "citation_relevance": 0.0,
                                   "terminology_recall": 0.0})
    assert not result.passed
    assert [f.split(":")[0] for f in result.failures] == [
        "bleu", "citations_invented", "citation_relevance", "terminology_recall"]
    assert "not measured" in result.failures[2]


def test_check_gate_uses_the_interval_lower_bound_in_every_mode():
    variants = {"base": {}, "adapter": {}}
    intervals = {"rouge_l@closed": Delta(0.05, 0.01, 0.09, 100), "rouge_l@open": Delta(0.05, -0.01, 0.11, 100),
                 "terminology_recall@closed": Delta(-0.02, -0.05, 0.01, 100),
                 "terminology_recall@open": Delta(-0.06, -0.09, -0.02, 100)}
    result = check_gate(variants, {"rouge_l": 0.0}, intervals=intervals, modes=["closed", "open"],
                        no_worse={"terminology_recall": 0.0})
    assert [f.split(":")[0] for f in result.failures] == ["rouge_l@open", "terminology_recall@open"]
    assert check_gate(variants, {"rouge_l": 0.0}, intervals=intervals, modes=["closed"],
                      no_worse={"terminology_recall": 0.0}).passed


def test_matrix_library(tiny_llama_dir, workspace, loaded, index, tmp_path):
    cfg = _cfg(tiny_llama_dir, **{"evaluation.metrics": ["bleu", "terminology_recall", "diagnostic_accuracy_mc",
                                                        "citation_coverage"], "evaluation.modes": ["closed", "open"]})
    matrix = evaluate_matrix(
        cfg, {"dermatology": workspace / "lora-dermatology", "cardiology": workspace / "lora-cardiology"},
        {s: workspace / "data" / s for s in ("dermatology", "cardiology")}, tmp_path / "matrix",
        loaded=loaded, vocabulary=VOCAB, index=index)
    assert list(matrix.cells) == ["base", "dermatology", "cardiology"]
    for row in matrix.cells.values():
        assert list(row) == ["dermatology", "cardiology"]
        assert all(set(cell) == {"bleu@closed", "bleu@open", "terminology_recall@closed", "terminology_recall@open",
                                 "diagnostic_accuracy_mc", "citation_coverage@open"} for cell in row.values())
    assert matrix.counts["cardiology"] == {"qa": 6, "vignettes": 3, "qa_closed": 6, "qa_open": 6}
    md = (tmp_path / "matrix" / "matrix.md").read_text()
    assert "| adapter \\ specialty | dermatology | cardiology |" in md
    assert _png_payloads((tmp_path / "matrix" / "matrix.html").read_text())


def _write_config(path: Path, tiny_llama_dir: Path, root: Path, margins: dict, metrics: list[str]) -> Path:
    config = {
        "models": {"llm": {"name": str(tiny_llama_dir)}},
        "data": {"specialty": "dermatology", "output_dir": str(root / "data" / "{specialty}")},
        "training": {"output_dir": str(root / "lora-{specialty}")},
        "evaluation": {"max_new_tokens": 6, "batch_size": 4, "metrics": metrics, "vignettes": 2,
                       "vignette_max_new_tokens": 4, "modes": ["closed"], "latency_samples": 0,
                       "medquad_dir": "", "abstracts_csv": "", "hpo_sources": False, "outside": False,
                       "note_cases": False,
                       "bootstrap_resamples": 100,
                       "output_dir": str(path.parent / "reports" / "{specialty}"),
                       "gate": {"margins": margins, "modes": ["closed"], "no_worse": {}}},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_cli_gate_passes(tiny_llama_dir, workspace, tmp_path):
    from medlora.cli import app

    config = _write_config(tmp_path / "config.yaml", tiny_llama_dir, workspace, {"bleu": -1.0},
                           ["bleu", "rouge_l", "diagnostic_accuracy_mc"])
    result = CliRunner().invoke(app, ["evaluate", "--config", str(config), "--gate"])
    assert result.exit_code == 0, result.output
    assert "Quality gate passed" in result.output
    assert (tmp_path / "reports" / "dermatology" / "report.html").is_file()


def test_cli_gate_fails_naming_the_metric(tiny_llama_dir, workspace, tmp_path):
    from medlora.cli import app

    config = _write_config(tmp_path / "config.yaml", tiny_llama_dir, workspace, {"rouge_l": 1.0},
                           ["bleu", "rouge_l"])
    result = CliRunner().invoke(app, ["evaluate", "--config", str(config), "--gate"])
    assert result.exit_code == 1, result.output
    assert "Quality gate failed" in result.output and "rouge_l" in result.output
    # without --gate the same miss is reported but does not fail the command
    assert CliRunner().invoke(app, ["evaluate", "--config", str(config)]).exit_code == 0


def test_cli_matrix_with_gate(tiny_llama_dir, workspace, tmp_path):
    from medlora.cli import app

    config = _write_config(tmp_path / "config.yaml", tiny_llama_dir, workspace, {"bleu": 1.0}, ["bleu"])
    result = CliRunner().invoke(app, ["evaluate", "--config", str(config), "--adapters", "dermatology,cardiology",
                                      "--output-dir", str(tmp_path / "matrix"), "--gate"])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert "dermatology on dermatology: bleu@closed" in flat and "cardiology on cardiology: bleu@closed" in flat
    matrix = json.loads((tmp_path / "matrix" / "matrix.json").read_text())
    assert matrix["specialties"] == ["dermatology", "cardiology"]
    assert list(matrix["cells"]) == ["base", "dermatology", "cardiology"]


def test_report_formatting_and_matrix_best_marks():
    from medlora.evaluation.report_tables import format_delta, format_value, matrix_tables

    assert format_value(0.4213) == "0.421" and format_value(0.45, "percent") == "45.0 %"
    assert format_value(None) == "–" and format_value(3.0, "count") == "3"
    assert format_delta(-1e-7) == "+0.000" and format_delta(0.123, "percent") == "+12.3 pp"
    matrix = {
        "specialties": ["dermatology", "cardiology"],
        "metric_labels": {"bleu": "BLEU", "citations_invented": "Invented"},
        "metric_display": {"bleu": "score", "citations_invented": "count"},
        "lower_is_better": ["citations_invented"],
        "cells": {
            "base": {"dermatology": {"bleu": 0.1, "citations_invented": 2.0},
                     "cardiology": {"bleu": 0.2, "citations_invented": 1.0}},
            "dermatology": {"dermatology": {"bleu": 0.3, "citations_invented": 0.0},
                            "cardiology": {"bleu": 0.2, "citations_invented": 1.0}},
        },
    }
    (_, _, header, bleu), (_, _, _, invented) = matrix_tables(matrix)
    assert header == ["adapter \\ specialty", "dermatology", "cardiology"]
    assert bleu == [["base", "0.100", "0.200"], ["dermatology", "0.300 *", "0.200"]]  # a full tie marks nothing
    assert invented == [["base", "2", "1"], ["dermatology", "0 *", "1"]]  # lower is better
