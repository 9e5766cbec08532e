"""The names of the files in an adapter directory, and what makes a directory one.

An adapter directory is the PEFT layout (``adapter_config.json`` + ``adapter_model.safetensors``) plus what
``medlora train`` adds: ``medlora.json`` (the facts: base model, data, hyper-parameters, evaluations), the
``README.md`` model card rendered from it, the training log and the loss curve.
"""

from __future__ import annotations

from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
SAFETENSORS_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"  # refused: pickle can run code when loaded
METADATA_FILE = "medlora.json"
CARD_FILE = "README.md"
TRAINING_LOG_FILE = "training_log.json"
LOSS_CURVE_FILE = "loss_curve.png"

# A directory holding one of these was written by training (so a retrain may replace it).
ADAPTER_MARKERS = (METADATA_FILE, ADAPTER_CONFIG)
# Everything a published adapter consists of.
PUBLISHED_FILES = (ADAPTER_CONFIG, SAFETENSORS_WEIGHTS, CARD_FILE, METADATA_FILE, TRAINING_LOG_FILE, LOSS_CURVE_FILE)


def is_adapter_dir(path: Path) -> bool:
    """A directory in the PEFT layout (it has an ``adapter_config.json``)."""
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()
