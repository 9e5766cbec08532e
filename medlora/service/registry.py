"""Which adapters exist on disk, what they are called, and whether they are safe to load.

An adapter is any directory with an ``adapter_config.json`` (the PEFT layout). Its name is the specialty
recorded in ``medlora.json`` at training time, else the directory name without the ``lora-``/``-adapter``
decoration, so ``data/models/lora-dermatology-adapter`` is served as ``dermatology``.

Only safetensors weights are accepted: a pickled ``adapter_model.bin`` can run arbitrary code when loaded,
and a bot that loads adapters on request (``POST /v1/adapters``) must never unpickle files.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlora.errors import MedloraError
from medlora.training.model_card import read_metadata

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
SAFETENSORS_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"
BASE_NAME = "base"  # the name clients use for "no adapter"
AUTO_NAME = "auto"  # the name clients use for "let the router choose"
RESERVED_NAMES = frozenset({BASE_NAME, AUTO_NAME, "__base__"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AdapterNotFoundError(MedloraError):
    """A request named an adapter that is not loaded."""


@dataclass(frozen=True)
class AdapterInfo:
    """A loaded (or loadable) adapter as the service and the API describe it."""

    name: str
    path: Path
    specialty: str | None
    base_model: str | None
    gate_passed: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "specialty": self.specialty,
            "base_model": self.base_model,
            "gate_passed": self.gate_passed,
        }


def is_adapter_dir(path: Path) -> bool:
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def default_adapter_name(adapter_dir: Path) -> str:
    """``medlora.json``'s specialty, else the directory name with ``lora-``/``-adapter`` stripped."""
    specialty = read_metadata(adapter_dir).get("specialty")
    if isinstance(specialty, str) and specialty.strip():
        # A specialty given as a term-list path (``data/x.txt``) names the adapter by its stem.
        return Path(specialty.strip()).stem
    return directory_adapter_name(adapter_dir)


def directory_adapter_name(adapter_dir: Path) -> str:
    """The directory name without ``lora-``/``-adapter``: ``lora-dermatology-v2-adapter`` → ``dermatology-v2``."""
    name = adapter_dir.name
    name = name.removeprefix("lora-").removeprefix("lora_")
    name = name.removesuffix("-adapter").removesuffix("_adapter")
    return name or adapter_dir.name


def validate_name(name: str) -> str:
    """Adapter names appear in URLs and as PEFT module keys: keep them short and plain."""
    if name in RESERVED_NAMES:
        raise MedloraError(f"'{name}' is reserved (base and auto are built in); choose another adapter name")
    if not _NAME.match(name):
        raise MedloraError(
            f"invalid adapter name '{name}': use letters, digits, '.', '_' and '-' (at most 64 characters)"
        )
    return name


def validate_adapter_files(adapter_dir: Path) -> dict[str, Any]:
    """Check the PEFT layout and return the parsed ``adapter_config.json``.

    Raises a :class:`MedloraError` that says what is wrong and how to fix it.
    """
    if not adapter_dir.is_dir():
        raise MedloraError(f"{adapter_dir}: adapter directory not found")
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise MedloraError(f"{adapter_dir}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    if not (adapter_dir / SAFETENSORS_WEIGHTS).is_file():
        if (adapter_dir / PICKLE_WEIGHTS).is_file():
            raise MedloraError(
                f"{adapter_dir}: only {PICKLE_WEIGHTS} (pickle) found; medlora loads safetensors only because "
                "pickle files can run code. Convert it once where you trust the file: "
                "PeftModel.from_pretrained(base, DIR).save_pretrained(DIR, safe_serialization=True)"
            )
        raise MedloraError(f"{adapter_dir}: no {SAFETENSORS_WEIGHTS}; the adapter weights are missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MedloraError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise MedloraError(f"{config_path}: expected a JSON object")
    return config


def describe_adapter(adapter_dir: Path, name: str | None = None) -> AdapterInfo:
    """Validate ``adapter_dir`` and describe it; ``name`` defaults to :func:`default_adapter_name`."""
    adapter_dir = Path(adapter_dir)
    config = validate_adapter_files(adapter_dir)
    metadata = read_metadata(adapter_dir)
    metrics = metadata.get("metrics") or {}
    specialty = metadata.get("specialty")
    return AdapterInfo(
        name=validate_name(name or default_adapter_name(adapter_dir)),
        path=adapter_dir.resolve(),
        specialty=Path(specialty).stem if isinstance(specialty, str) and specialty else None,
        base_model=config.get("base_model_name_or_path"),
        gate_passed=metrics.get("gate_passed") if isinstance(metrics, dict) else None,
    )


def scan_adapters_dir(adapters_dir: Path) -> list[Path]:
    """Adapter directories directly under ``adapters_dir`` (sorted, so names resolve the same every run)."""
    if not adapters_dir.is_dir():
        return []
    return [p for p in sorted(adapters_dir.iterdir()) if not p.name.startswith(".") and is_adapter_dir(p)]
