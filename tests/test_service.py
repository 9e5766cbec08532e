"""LLMService on tiny random models: load, switch, unload, route, refuse, cite, batch, stream, merge.

Adapters here are made (helpers.make_adapter) with random LoRA B weights instead of training: training is tested
in test_end_to_end.py, and a perturbed adapter is what these tests need — one that changes the output.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
import torch
from helpers import CARD_Q, DERM_Q, make_adapter, make_index, make_router, service_config
from transformers import AutoModelForCausalLM

from medlora import MEDICAL_DISCLAIMER
from medlora.errors import AdapterMismatchError, MedloraError
from medlora.service.answers import NO_SOURCE_NOTE
from medlora.service.llm_service import CitationFilter, LLMService
from medlora.service.registry import AdapterNotFoundError, default_adapter_name
from medlora.adapters.metadata import write_metadata


@pytest.fixture(scope="module")
def adapters_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(tiny_llama_dir, root / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(tiny_llama_dir, root / "lora-cardiology-adapter", "cardiology", seed=2)
    return root


@pytest.fixture(scope="module")
def service(wordy_llama_dir, tmp_path_factory) -> LLMService:
    root = tmp_path_factory.mktemp("wordy-adapters")
    make_adapter(wordy_llama_dir, root / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(wordy_llama_dir, root / "lora-cardiology-adapter", "cardiology", seed=2)
    svc = LLMService(service_config(wordy_llama_dir, root), index=make_index(), router=make_router())
    svc.load_model()
    return svc


def test_scan_names_and_answers_differ_per_adapter(service):
    assert sorted(a.name for a in service.list_adapters()) == ["cardiology", "dermatology"]
    base = service.answer(DERM_Q, "base")
    derm = service.answer(DERM_Q, "dermatology")
    card = service.answer(DERM_Q, "cardiology")
    assert (base.adapter, derm.adapter, card.adapter) == ("base", "dermatology", "cardiology")
    assert len({base.body, derm.body, card.body}) == 3, "adapters must change the (greedy) answer"
    for answer in (base, derm, card):
        assert answer.disclaimer == MEDICAL_DISCLAIMER
        assert MEDICAL_DISCLAIMER in answer.full_text
        assert answer.timings["total_s"] > 0 and answer.timings["new_tokens"] > 0


def test_default_adapter_switch(service):
    service.set_adapter("cardiology")
    try:
        assert service.answer(DERM_Q).adapter == "cardiology"
        with pytest.raises(AdapterNotFoundError):
            service.set_adapter("neurology")
    finally:
        service.set_adapter("auto")


def test_auto_routes_by_question_and_falls_back_to_base(service):
    assert service.answer(DERM_Q, "auto").adapter == "dermatology"
    card = service.answer(CARD_Q, "auto")
    assert card.adapter == "cardiology" and card.route is not None and card.route.probability >= 0.6
    assert service.answer("Qzx vrb plk?", "auto").adapter == "base"  # no known word: not confident


def test_cited_answer_lists_exactly_the_retrieved_sources(service):
    answer = service.answer(DERM_Q, "dermatology")
    assert [s.title for s in answer.sources][0] == "Melanoma"
    assert 1 <= len(answer.sources) <= 2
    block = answer.text.split("Sources:\n", 1)[1].splitlines()
    assert block == [f"[{s.number}] {s.title} — {s.url}" for s in answer.sources]
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.body)}
    assert cited <= {s.number for s in answer.sources}


def test_the_bot_shows_only_sources_whose_title_the_question_names(service):
    """service.min_source_match: "Psoriasis" is a BM25 hit for a melanoma question about the skin, but the question
    does not name it, so it is not shown; 0 shows the top k; a question naming no title gets no source."""
    assert [s.title for s in service.retrieve(DERM_Q)] == ["Melanoma"]
    assert service.retrieve("What should I do about red skin?") == []
    unmatched = service.answer("What should I do about red skin?", "dermatology")
    assert unmatched.sources == [] and unmatched.note == NO_SOURCE_NOTE
    assert unmatched.text == f"{unmatched.body}\n\n{NO_SOURCE_NOTE}" and "Sources:" not in unmatched.text
    assert service.answer(DERM_Q, "dermatology").note == ""
    streamed = service.stream("What should I do about red skin?", "dermatology")
    "".join(streamed)
    assert streamed.answer is not None and streamed.answer.text == unmatched.text
    shown_all = service.config.with_overrides({"service.min_source_match": 0.0})
    original = service.config
    service.config = shown_all
    try:
        assert [s.title for s in service.retrieve(DERM_Q)] == ["Melanoma", "Psoriasis"]
        assert service.retrieve("What should I do about red skin?") != []
    finally:
        service.config = original


def test_the_bot_guards_answers_with_the_text_of_the_sources_it_shows(service, monkeypatch):
    """The stated-inheritance guard reads the shown sources: the batch and the streaming paths both pass them."""
    import medlora.service.llm_service as llm_module
    import medlora.service.streaming as streaming_module

    seen: dict[str, object] = {}
    real_batch, real_kwargs = llm_module.generate_batch, streaming_module.decoding_kwargs

    def batch(*args, **kwargs):
        seen["batch"] = kwargs["source_texts"]
        return real_batch(*args, **kwargs)

    def decoding(*args, **kwargs):
        seen["stream"] = kwargs["source_texts"]
        return real_kwargs(*args, **kwargs)

    monkeypatch.setattr(llm_module, "generate_batch", batch)
    monkeypatch.setattr(streaming_module, "decoding_kwargs", decoding)
    answer = service.answer(DERM_Q, "dermatology")
    assert seen["batch"] == [" ".join(s.text for s in answer.sources)] and "asymmetry" in seen["batch"][0]
    "".join(service.stream(DERM_Q, "dermatology"))
    assert seen["stream"] == seen["batch"]
    service.answer("What should I do about red skin?", "dermatology")  # shown no source: nothing to guard
    assert seen["batch"] == [""]


def test_citation_filter_drops_unretrieved_numbers_even_when_streamed():
    text = "Asymmetry [1] and borders [7]; see [2, 9] or [12]. Array[i] stays, so does [note]."
    whole = CitationFilter(2).apply(text)
    assert whole == "Asymmetry [1] and borders ; see [2] or . Array[i] stays, so does [note]."
    pieces = CitationFilter(2)
    streamed = "".join(pieces.feed(ch) for ch in text) + pieces.flush()
    assert streamed == whole
    assert CitationFilter(0).apply("[1] x [") == " x ["


def test_mixed_batch_equals_per_request(service):
    questions = [DERM_Q, CARD_Q, "Is psoriasis contagious?", "What is heart failure?"]
    adapters = ["dermatology", "cardiology", "base", "auto"]
    batch = service.answer_batch(questions, adapters)
    single = [service.answer(q, a) for q, a in zip(questions, adapters, strict=True)]
    assert [a.adapter for a in batch] == [a.adapter for a in single] == ["dermatology", "cardiology", "base",
                                                                        "cardiology"]
    assert [a.text for a in batch] == [a.text for a in single]
    assert all(a.timings["batch_size"] == 4 for a in batch)


def test_stream_yields_the_same_answer(service):
    reference = service.answer(DERM_Q, "dermatology")
    stream = service.stream(DERM_Q, "dermatology")
    assert stream.adapter == "dermatology" and stream.sources == reference.sources  # known before tokens
    pieces = list(stream)
    assert len(pieces) >= 5, f"expected a piece per word, got {pieces}"
    assert "".join(pieces) == reference.body
    assert stream.answer is not None and stream.answer.text == reference.text


def test_stream_closed_early_stops_generating_and_frees_the_model(service):
    steps: list[int] = []  # one embedding lookup per decoding step

    def slow_step(*_: object) -> None:  # 50 steps take over a second: closing after the first piece is sooner
        steps.append(1)
        time.sleep(0.02)

    hook = service.generation_model.get_input_embeddings().register_forward_hook(slow_step)
    try:
        stream = service.stream(CARD_Q, "cardiology", max_new_tokens=50)
        iterator = iter(stream)
        next(iterator)
        iterator.close()  # the reader goes away: generation stops and the lock is released
    finally:
        hook.remove()
    assert 0 < len(steps) < 25, f"generation went on after the reader left ({len(steps)} of 50 steps)"
    assert stream.answer is None
    assert service._lock.acquire(timeout=5), "the model is still locked"
    service._lock.release()
    assert service.answer(CARD_Q, "cardiology").body


def test_question_text_is_not_logged(service, caplog):
    marker = "Zebrapatient Smith rash question"
    with caplog.at_level(logging.DEBUG):
        service.answer(marker, "dermatology")
        list(service.stream(marker, "dermatology"))
    assert "Zebrapatient" not in caplog.text
    assert "answered 1 question" in caplog.text


def test_load_unload_and_refusals(tiny_llama_dir, adapters_dir, tmp_path):
    svc = LLMService(service_config(tiny_llama_dir, tmp_path / "none", **{"service.retrieval": False}))
    svc.load_model()
    assert svc.list_adapters() == [] and not svc.has_adapters
    base_answer = svc.answer(DERM_Q, "base")
    assert base_answer.sources == [] and "Sources:" not in base_answer.text
    assert svc.answer(DERM_Q, "auto").adapter == "base"  # no adapter: auto means base

    svc.load_adapter("derm", adapters_dir / "lora-dermatology-adapter")
    assert [a.name for a in svc.list_adapters()] == ["derm"]
    with pytest.raises(MedloraError, match="already loaded"):
        svc.load_adapter("derm", adapters_dir / "lora-cardiology-adapter")
    with pytest.raises(MedloraError, match="reserved"):
        svc.load_adapter("base", adapters_dir / "lora-cardiology-adapter")
    assert svc.answer(DERM_Q, "derm").body != base_answer.body

    other = make_adapter(tiny_llama_dir, tmp_path / "other", "dermatology", base_id="someone/other-model")
    with pytest.raises(AdapterMismatchError, match="someone/other-model"):
        svc.load_adapter("other", other)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text((other / "adapter_config.json").read_text())
    (pickled / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(MedloraError, match="safetensors"):
        svc.load_adapter("pickled", pickled)

    svc.unload_adapter("derm")
    assert svc.list_adapters() == [] and not svc.has_adapters
    with pytest.raises(AdapterNotFoundError):
        svc.answer(DERM_Q, "derm")
    assert svc.answer(DERM_Q, "base").body == base_answer.body, "unloading must give the plain base back"


def test_loaded_adapters_are_frozen_and_hold_only_their_own_weights(tiny_llama_dir, adapters_dir, tmp_path):
    """An adapter loaded for serving needs no gradients, and each one adds exactly its file's tensors."""
    from safetensors.torch import load_file

    svc = LLMService(service_config(tiny_llama_dir, tmp_path / "none", **{"service.retrieval": False}))
    svc.load_model()
    base_params = {n: p.numel() for n, p in svc.loaded_model.model.named_parameters()}
    paths = {"derm": adapters_dir / "lora-dermatology-adapter", "card": adapters_dir / "lora-cardiology-adapter"}
    for name, path in paths.items():
        svc.load_adapter(name, path)
    params = dict(svc.generation_model.named_parameters())
    assert not [n for n, p in params.items() if p.requires_grad], "serving adapters must not require gradients"
    assert not [n for n, p in params.items() if p.is_meta], "no adapter weight may be left unloaded"
    lora = {n: p for n, p in params.items() if ".lora_" in n}
    assert sum(p.numel() for p in params.values()) - sum(p.numel() for p in lora.values()) == sum(
        base_params.values()), "loading adapters must not copy base weights"
    for name, path in paths.items():
        saved = load_file(str(path / "adapter_model.safetensors"))
        mine = {n: p for n, p in lora.items() if n.endswith(f".{name}.weight")}
        assert sum(p.numel() for p in mine.values()) == sum(t.numel() for t in saved.values())
        for key, tensor in saved.items():
            assert torch.equal(mine[key.removesuffix(".weight") + f".{name}.weight"], tensor)


def test_configured_adapter_is_default_and_bad_scan_entries_are_skipped(tiny_llama_dir, adapters_dir, tmp_path,
                                                                        caplog):
    scan = tmp_path / "models"
    make_adapter(tiny_llama_dir, scan / "lora-cardiology-adapter", "cardiology", seed=2)
    make_adapter(tiny_llama_dir, scan / "lora-cardiology-v2-adapter", "cardiology", seed=5)
    make_adapter(tiny_llama_dir, scan / "foreign-adapter", "foreign", base_id="someone/other-model")
    cfg = service_config(tiny_llama_dir, scan, **{
        "models.llm.use_medical_adapter": True,
        "models.llm.adapter_path": str(adapters_dir / "lora-dermatology-adapter"),
        "service.retrieval": False,
    })
    svc = LLMService(cfg)
    with caplog.at_level(logging.WARNING):
        svc.load_model()
    assert sorted(a.name for a in svc.list_adapters()) == ["cardiology", "cardiology-v2", "dermatology"]
    assert "foreign-adapter" in caplog.text
    assert svc.default_adapter == "dermatology" and svc.answer(DERM_Q).adapter == "dermatology"


def test_adapter_names_from_directory():
    assert default_adapter_name(Path("/nowhere/lora-neurology-adapter")) == "neurology"
    assert default_adapter_name(Path("/nowhere/cardio_adapter")) == "cardio"


def test_merge_matches_unmerged_adapter(service, tmp_path, tiny_tokenizer):
    out = service.merge("dermatology", tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no PEFT
    assert not any("lora" in name for name, _ in merged.named_parameters())

    prompt = service._prompt(DERM_Q, [])
    device = next(service.generation_model.parameters()).device
    inputs = tiny_tokenizer([prompt], return_tensors="pt").to(device)
    merged.to(device)
    kwargs = dict(max_new_tokens=16, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = service.generation_model.generate(**inputs, adapter_names=["dermatology"], **kwargs)
        base = service.generation_model.generate(**inputs, adapter_names=["__base__"], **kwargs)
        got = merged.generate(**inputs, **kwargs)
    assert got.tolist() == expected.tolist()
    assert got.tolist() != base.tolist(), "the perturbed adapter should change the output"


def test_t5_mixed_batch_and_stream(tiny_t5_dir, tmp_path):
    adapters = tmp_path / "adapters"
    make_adapter(tiny_t5_dir, adapters / "lora-dermatology-adapter", "dermatology", seed=3)
    svc = LLMService(service_config(tiny_t5_dir, adapters), index=make_index(), router=make_router())
    svc.load_model()
    questions, names = [DERM_Q, CARD_Q], ["dermatology", "base"]
    batch = svc.answer_batch(questions, names)
    single = [svc.answer(q, a) for q, a in zip(questions, names, strict=True)]
    assert [a.text for a in batch] == [a.text for a in single]
    stream = svc.stream(DERM_Q, "dermatology")
    assert "".join(stream).strip() == single[0].body


# ------------------------------------------------------------------------------------------ hub and CLI


def _adapter_for_push(tiny_llama_dir, path: Path, **metrics) -> Path:
    make_adapter(tiny_llama_dir, path, "dermatology", seed=4)
    if metrics:
        from medlora.adapters.metadata import read_metadata

        meta = read_metadata(path)
        meta["metrics"] = metrics
        write_metadata(path, meta)
    return path


def test_push_dry_run_validates_offline(tiny_llama_dir, tmp_path):
    from medlora.service.hub import PushError, push_adapter

    adapter = _adapter_for_push(tiny_llama_dir, tmp_path / "lora-dermatology-adapter", gate_passed=True)
    (tmp_path / "lora-dermatology-adapter" / ".hidden").write_text("x")
    result = push_adapter(adapter, "me/derm-lora", dry_run=True)
    assert result.dry_run and result.url is None and result.warnings == []
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "medlora.json"} <= set(result.files)
    assert ".hidden" not in result.files

    with pytest.raises(PushError, match="OWNER/NAME"):
        push_adapter(adapter, "no-owner", dry_run=True)
    (adapter / "README.md").write_text("# no front matter\n")
    (adapter / "adapter_config.json").write_text("{not json")
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(PushError) as err:
        push_adapter(adapter, "me/derm-lora", dry_run=True)
    message = str(err.value)
    assert "front matter" in message and "does not parse" in message and "does not load" in message
    (adapter / "README.md").unlink()
    with pytest.raises(PushError, match="missing README.md"):
        push_adapter(adapter, "me/derm-lora", dry_run=True)


def test_push_refuses_a_failed_gate_unless_forced(tiny_llama_dir, tmp_path):
    from medlora.service.hub import PushError, push_adapter

    adapter = _adapter_for_push(tiny_llama_dir, tmp_path / "adapter", gate_passed=False)
    with pytest.raises(PushError, match="gate"):
        push_adapter(adapter, "me/derm-lora", dry_run=True)
    forced = push_adapter(adapter, "me/derm-lora", dry_run=True, force=True)
    assert any("gate failed" in w for w in forced.warnings)
    unevaluated = _adapter_for_push(tiny_llama_dir, tmp_path / "fresh")
    assert any("not evaluated" in w for w in push_adapter(unevaluated, "me/x", dry_run=True).warnings)


def test_push_to_an_unreachable_hub_is_a_clear_error(tiny_llama_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from medlora.service.hub import PushError, push_adapter

    adapter = _adapter_for_push(tiny_llama_dir, tmp_path / "adapter", gate_passed=True)
    with pytest.raises(PushError, match="offline mode|could not reach"):  # HF_HUB_OFFLINE=1 in the tests
        push_adapter(adapter, "me/derm-lora", endpoint="http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(PushError, match="could not reach http://127.0.0.1:9"):
        push_adapter(adapter, "me/derm-lora", endpoint="http://127.0.0.1:9")


def test_cli_push_merge_and_chat(tiny_llama_dir, adapters_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medlora.cli import app

    # The default source index from the built-in sets only (no MedQuAD), cached in tmp.
    monkeypatch.setenv("MEDQUAD_DIR", str(tmp_path / "no-medquad"))
    monkeypatch.setenv("MEDICAL_ABSTRACTS_CSV", str(tmp_path / "no-abstracts.csv"))
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    common = ["--model", str(tiny_llama_dir), "--adapters-dir", str(adapters_dir)]

    result = runner.invoke(app, ["push", str(adapters_dir / "lora-dermatology-adapter"), "me/derm", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Nothing was uploaded" in result.output
    result = runner.invoke(app, ["push", str(tmp_path), "me/derm", "--dry-run"])
    assert result.exit_code == 2 and "missing adapter_config.json" in result.output

    result = runner.invoke(app, ["merge", "cardiology", str(tmp_path / "merged"), *common])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    result = runner.invoke(app, ["merge", "neurology", str(tmp_path / "merged2"), *common])
    assert result.exit_code == 2 and "unknown adapter 'neurology'" in result.output

    script = "/adapters\n/adapter nonexistent\n/adapter dermatology\nWhat does psoriasis look like?\n/quit\n"
    # A short answer budget leaves the 512-token context of the tiny model room for the sources.
    result = runner.invoke(app, ["chat", *common, "--max-new-tokens", "16"], input=script)
    assert result.exit_code == 0, result.output
    assert "cardiology" in result.output and "unknown adapter 'nonexistent'" in result.output
    assert "answering with dermatology" in result.output.replace("\n", " ")
    assert "Sources:" in result.output and "[1]" in result.output
    assert MEDICAL_DISCLAIMER.split(";")[0] in result.output.replace("\n", " ")
