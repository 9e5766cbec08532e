"""Checks on an adapter directory before it is put on a base model."""

from __future__ import annotations

import json
from pathlib import Path

from medlora.errors import AdapterMismatchError, MedloraError
from medlora.models.loading import LoadedModel


def check_adapter_base(adapter_dir: Path, loaded: LoadedModel) -> None:
    """Refuse an adapter trained on another base: its weights would load silently and answer garbage."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise MedloraError(f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json); train one first")
    expected = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if expected and expected not in (loaded.source.base_model_id, loaded.source.name, loaded.source.location):
        raise AdapterMismatchError(
            f"{adapter_dir} was trained on '{expected}' but the loaded base is '{loaded.source.base_model_id}'; "
            "set models.llm.name to the adapter's base model"
        )
