"""Saving an adapter directory: all of it or nothing, so a crash never leaves half an adapter to be served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medlora.adapters.layout import ADAPTER_CONFIG
from medlora.adapters.metadata import write_metadata
from medlora.fsutil import atomic_directory


@contextmanager
def staged_adapter(adapter_dir: Path) -> Iterator[Path]:
    """A staging directory that replaces ``adapter_dir`` when the block ends without error.

    A retrain keeps the adapter it replaces beside it (``.prev``), never served.
    """
    with atomic_directory(adapter_dir, keep_previous=True) as staging:
        yield staging


def record_base_model(adapter_dir: Path, base_model_id: str) -> None:
    """Name the base by its public id in ``adapter_config.json``, so vLLM/LoRAX/PEFT users know what to load."""
    path = adapter_dir / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model_id
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def rewrite_metadata(adapter_dir: Path, metadata: dict[str, Any]) -> None:
    """Replace ``medlora.json`` and the card of a saved adapter, atomically like the adapter itself."""
    with atomic_directory(adapter_dir) as staging:
        for item in adapter_dir.iterdir():
            if item.is_file():
                (staging / item.name).write_bytes(item.read_bytes())
        write_metadata(staging, metadata)
