"""Which adapters exist on disk, what they are called, and whether they are safe to load.

An adapter is any directory with an ``adapter_config.json`` (the PEFT layout). Its name is the specialty
recorded in ``medlora.json`` at training time, else the directory name without the ``lora-``/``-adapter``
decoration, so ``data/models/lora-dermatology-adapter`` is served as ``dermatology``.

Only safetensors weights holding LoRA matrices alone are accepted (:mod:`medlora.adapters.checks`): a pickled
``adapter_model.bin`` can run arbitrary code when loaded, and extra tensors would overwrite the shared base.
Adapters loaded over HTTP must lie inside ``adapters_dir`` (:func:`resolve_admin_path`), and what the API shows
of an adapter never includes a path of the server.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlora.adapters.checks import check_adapter_files
from medlora.adapters.layout import is_adapter_dir
from medlora.adapters.metadata import gate_verdict, read_metadata
from medlora.errors import MedloraError
from medlora.fsutil import PREVIOUS_SUFFIX  # the adapter a retrain replaced: kept beside it, never served

log = logging.getLogger(__name__)
BASE_NAME = "base"  # the name clients use for "no adapter"
AUTO_NAME = "auto"  # the name clients use for "let the router choose"
RESERVED_NAMES = frozenset({BASE_NAME, AUTO_NAME, "__base__"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AdapterNotFoundError(MedloraError):
    """A request named an adapter that is not loaded."""


class AdminPathError(MedloraError):
    """``POST /v1/adapters`` named a path that is not an adapter directory inside ``adapters_dir``."""


@dataclass(frozen=True)
class AdapterInfo:
    """A loaded (or loadable) adapter as the service and the API describe it."""

    name: str
    path: Path
    specialty: str | None
    base_model: str | None
    gate_passed: bool | None

    def to_json(self) -> dict[str, Any]:
        """What clients see: the directory's name only, never the server's absolute path."""
        return {
            "name": self.name,
            "directory": self.path.name,
            "specialty": self.specialty,
            "base_model": public_model_id(self.base_model),
            "gate_passed": self.gate_passed,
        }


def public_model_id(model_id: str | None) -> str | None:
    """A model id fit for clients: a hub id or ``embedded:`` name as is, a local path by its last component."""
    if not model_id:
        return model_id
    if os.path.isabs(model_id) or model_id.startswith((".", "~")) or model_id.count("/") > 1:
        return Path(model_id).name
    return model_id


def resolve_admin_path(adapters_dir: Path, requested: str) -> Path:
    """The adapter directory ``requested`` names, only if it resolves (symlinks followed) inside ``adapters_dir``.

    ``requested`` is normally a directory name under ``adapters_dir``. Whatever is wrong — outside, missing,
    a symlink out, not an adapter — the answer is the same message, so the API cannot be used to probe which
    paths exist on the server.
    """
    refused = AdminPathError(f"no adapter directory '{Path(requested).name or requested}' in the server's adapters "
                             "directory; copy the adapter there (models.llm.adapters_dir) and give its directory "
                             "name")
    if not requested or "\x00" in requested:
        raise refused
    root = Path(adapters_dir).resolve()
    candidate = Path(requested)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise refused from None
    if root not in resolved.parents or not is_adapter_dir(resolved):
        raise refused
    for item in resolved.iterdir():  # a file symlinked to elsewhere would be read from outside
        if item.is_symlink() and root not in item.resolve().parents:
            raise refused
    return resolved


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
    """Check the PEFT layout, the config and the tensors; return the parsed ``adapter_config.json``.

    Raises a :class:`MedloraError` that says what is wrong and how to fix it.
    """
    if not adapter_dir.is_dir():
        raise MedloraError(f"{adapter_dir}: adapter directory not found")
    return check_adapter_files(adapter_dir)


def describe_adapter(adapter_dir: Path, name: str | None = None) -> AdapterInfo:
    """Validate ``adapter_dir`` and describe it; ``name`` defaults to :func:`default_adapter_name`."""
    adapter_dir = Path(adapter_dir)
    config = validate_adapter_files(adapter_dir)
    metadata = read_metadata(adapter_dir)
    specialty = metadata.get("specialty")
    return AdapterInfo(
        name=validate_name(name or default_adapter_name(adapter_dir)),
        path=adapter_dir.resolve(),
        specialty=Path(specialty).stem if isinstance(specialty, str) and specialty else None,
        base_model=config.get("base_model_name_or_path"),
        gate_passed=gate_verdict(metadata),  # on its own test split, not the last evaluation run
    )


def scan_adapters_dir(adapters_dir: Path) -> list[Path]:
    """Adapter directories directly under ``adapters_dir`` (sorted, so names resolve the same every run)."""
    if not adapters_dir.is_dir():
        return []
    return [p for p in sorted(adapters_dir.iterdir())
            if not p.name.startswith(".") and not p.name.endswith(PREVIOUS_SUFFIX) and is_adapter_dir(p)]
