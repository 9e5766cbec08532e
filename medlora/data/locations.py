"""Where ``medlora data download`` keeps the data sets, so that each source's reader finds the downloaded copy."""

from __future__ import annotations

import os
from pathlib import Path

MEDQUAD_FOLDER = "medquad"
ABSTRACTS_FOLDER = "medical_abstracts"
ABSTRACTS_CSV = "medical_tc_test.csv"


def data_dir() -> Path:
    """``$MEDLORA_DATA_DIR``, else ``<medlora cache>/data`` (``~/.cache/medlora/data``)."""
    if os.environ.get("MEDLORA_DATA_DIR"):
        return Path(os.environ["MEDLORA_DATA_DIR"])
    base = Path(os.environ["MEDLORA_CACHE"]) if os.environ.get("MEDLORA_CACHE") else (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medlora")
    return base / "data"


def downloaded_medquad_dir() -> Path | None:
    """The MedQuAD folder ``medlora data download medquad`` wrote, when present."""
    path = data_dir() / MEDQUAD_FOLDER
    return path if path.is_dir() else None


def downloaded_abstracts_csv() -> Path | None:
    """The abstracts CSV ``medlora data download abstracts`` wrote, when present."""
    path = data_dir() / ABSTRACTS_FOLDER / ABSTRACTS_CSV
    return path if path.is_file() else None
