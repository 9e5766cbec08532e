"""The card's verdict belongs to the adapter's own test split; push publishes only allow-listed files, privately."""

from __future__ import annotations

import pytest
from helpers import make_adapter

from medlora.service.hub import ALLOWED_FILES, PushError, push_adapter
from medlora.service.registry import describe_adapter
from medlora.adapters.metadata import read_metadata, record_evaluation, write_metadata


def _evaluation(dataset_hash: str, passed: bool) -> dict:
    return {"dataset_hash": dataset_hash, "gate_passed": passed, "samples": 12, "date": "2026-11-29",
            "table_markdown": f"| table for {dataset_hash} |"}


@pytest.fixture
def adapter(tiny_llama_dir, tmp_path):
    path = make_adapter(tiny_llama_dir, tmp_path / "lora-dermatology-adapter", "dermatology", seed=1)
    meta = read_metadata(path)
    meta["data"] = {"dataset_hash": "own0123"}
    write_metadata(path, meta)
    return path


def test_another_data_sets_evaluation_does_not_replace_the_own_verdict(adapter):
    meta = read_metadata(adapter)
    record_evaluation(meta, _evaluation("own0123", passed=False))
    record_evaluation(meta, _evaluation("other999", passed=True))  # evaluated once elsewhere, later
    write_metadata(adapter, meta)
    meta = read_metadata(adapter)
    assert meta["metrics"]["dataset_hash"] == "own0123" and meta["metrics"]["gate_passed"] is False
    assert set(meta["evaluations"]) == {"own0123", "other999"}
    assert describe_adapter(adapter).gate_passed is False
    card = (adapter / "README.md").read_text()
    assert "table for own0123" in card and "data hash other999" in card

    with pytest.raises(PushError, match="failed its evaluation gate on its own test split"):
        push_adapter(adapter, "me/derm", dry_run=True)
    assert push_adapter(adapter, "me/derm", dry_run=True, eval_data="other999").warnings == []

    # Re-evaluating on the own split replaces that entry only.
    record_evaluation(meta, _evaluation("own0123", passed=True))
    write_metadata(adapter, meta)
    assert push_adapter(adapter, "me/derm", dry_run=True).warnings == []
    assert read_metadata(adapter)["evaluations"]["other999"]["gate_passed"] is True


def test_only_other_data_evaluated_is_not_ready(adapter):
    meta = read_metadata(adapter)
    record_evaluation(meta, _evaluation("other999", passed=True))
    write_metadata(adapter, meta)
    result = push_adapter(adapter, "me/derm", dry_run=True)
    assert any("not evaluated on its own test split" in w for w in result.warnings)


def test_push_uploads_an_allow_list_privately_with_the_token_from_the_environment(adapter, monkeypatch):
    import huggingface_hub

    (adapter / "secrets.env").write_text("API_KEY=x")
    (adapter / "notes").mkdir()
    (adapter / "notes" / "patient.txt").write_text("x")
    calls = {}

    class FakeApi:
        endpoint = "https://hub.example"

        def __init__(self, endpoint=None, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            calls["private"] = private

        def upload_folder(self, **kwargs):
            calls["upload"] = kwargs
            return None

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    meta = read_metadata(adapter)
    record_evaluation(meta, _evaluation("own0123", passed=True))
    write_metadata(adapter, meta)
    result = push_adapter(adapter, "me/derm")
    assert calls["private"] is True and calls["token"] is None  # the hub reads HF_TOKEN itself
    assert set(calls["upload"]["allow_patterns"]) == set(result.files) <= set(ALLOWED_FILES)
    assert "secrets.env" not in result.files and not any("patient" in f for f in result.files)
    push_adapter(adapter, "me/derm", private=False)
    assert calls["private"] is False


def test_push_has_no_token_flag():
    from typer.testing import CliRunner

    from medlora.cli import app

    result = CliRunner().invoke(app, ["push", "--help"])
    assert "--token" not in result.output and "--public" in result.output
