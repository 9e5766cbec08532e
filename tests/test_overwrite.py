"""Outputs that exist are never replaced blindly: merge targets, the demo's paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_adapter, service_config

from medlora.config import load_config
from medlora.errors import MedloraError
from medlora.fsutil import atomic_directory, check_replaceable
from medlora.service.llm_service import LLMService


def test_merge_refuses_a_non_empty_directory_it_did_not_write(tiny_llama_dir, tmp_path):
    models = tmp_path / "models"
    make_adapter(tiny_llama_dir, models / "lora-dermatology-adapter", "dermatology", seed=1)
    svc = LLMService(service_config(tiny_llama_dir, models, **{"service.retrieval": False}))
    svc.load_model()
    with pytest.raises(MedloraError, match="refusing to replace"):
        svc.merge("dermatology", models)  # `merge dermatology data/models` must not delete the adapters
    assert (models / "lora-dermatology-adapter" / "adapter_model.safetensors").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(MedloraError, match="not empty"):
        svc.merge("dermatology", other)
    assert (other / "todo.txt").read_text() == "mine"

    out = svc.merge("dermatology", tmp_path / "merged")
    again = svc.merge("dermatology", out)  # an earlier merge (MERGED.md) may be replaced
    assert (again / "MERGED.md").is_file() and (again / "model.safetensors").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (svc.merge("dermatology", empty) / "MERGED.md").is_file()


def test_check_replaceable_and_keep_previous(tmp_path):
    target = tmp_path / "thing"
    check_replaceable(target, ("marker",), "a thing")  # absent: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(MedloraError, match="is a file"):
        check_replaceable(tmp_path / "file", ("marker",), "a thing")
    for version in ("one", "two", "three"):
        with atomic_directory(target, keep_previous=True) as staging:
            (staging / "marker").write_text(version)
    assert (target / "marker").read_text() == "three"
    assert (tmp_path / "thing.prev" / "marker").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "thing", "thing.prev"]


def test_demo_has_its_own_paths():
    from medlora.cli.common import demo_paths, paths

    cfg = load_config(preset="demo")
    demo, full = demo_paths(cfg), paths(cfg)
    for mine, theirs in zip(demo, full, strict=True):
        assert mine != theirs and "demo" in str(mine)
    assert demo[1] == Path("data/models/lora-dermatology-demo-adapter")


def test_previous_adapter_is_kept_but_never_served(tiny_llama_dir, tmp_path):
    from medlora.service.registry import scan_adapters_dir

    make_adapter(tiny_llama_dir, tmp_path / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(tiny_llama_dir, tmp_path / "lora-dermatology-adapter.prev", "dermatology", seed=2)
    assert [p.name for p in scan_adapters_dir(tmp_path)] == ["lora-dermatology-adapter"]
