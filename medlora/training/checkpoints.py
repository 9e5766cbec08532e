"""Checkpoints that can only resume the run they belong to.

``--resume`` used to continue from whatever ``<adapter>.checkpoints/`` held — possibly a run on other data —
and then stamp the new data set's hash on the result. Now:

- every run records a **fingerprint** of what determines its weights (data set hash, base model, the LoRA and
  optimiser recipe) at the root of the checkpoints folder and in each checkpoint;
- ``--resume`` refuses a checkpoint whose fingerprint differs (naming the fields) or is missing;
- a fresh run removes stale checkpoints first, and a successful save removes the run's checkpoints;
- the fingerprint file is written *after* HF has finished saving a checkpoint, so it also marks the
  checkpoint complete: a process killed mid-save leaves a checkpoint without it, which is skipped.

The number of epochs is not part of the fingerprint: resuming to train longer is what ``--resume`` is for.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medlora.adapters.layout import ADAPTER_MARKERS
from medlora.config import MedloraConfig
from medlora.errors import MedloraError
from medlora.fsutil import check_replaceable

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "medlora_fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Settings that do not change what a step computes: everything else in ``training`` is fingerprinted, so a
# setting added later is covered without touching this list.
_NOT_FINGERPRINTED = frozenset({"output_dir", "epochs", "logging_steps", "save_steps", "max_eval_samples"})


def run_fingerprint(cfg: MedloraConfig, manifest: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's weights depend on: the data set, the base model and the step recipe."""
    training = cfg.training.model_dump()
    return {
        "dataset_hash": manifest.get("dataset_hash"),
        "base_model": cfg.models.llm.name,
        "training": {key: value for key, value in sorted(training.items()) if key not in _NOT_FINGERPRINTED},
    }


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += [f"{key}.{d}" for d in _differences(old, new)]
        elif old != new:
            diffs.append(f"{key} ({old!r} -> {new!r})")
    return diffs


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, fingerprint: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(fingerprint, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Checkpoints that finished saving (they hold the fingerprint file), oldest first."""
    if not checkpoints.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoints.iterdir()
             if p.is_dir() and (m := _CHECKPOINT.match(p.name)) and (p / FINGERPRINT_FILE).is_file()]
    return [p for _, p in sorted(found)]


def prepare_checkpoints(checkpoints: Path, adapter_dir: Path, fingerprint: dict[str, Any],
                        resume: bool) -> str | None:
    """Check the output path, then return the checkpoint to resume from (or ``None``: start fresh).

    Raises :class:`MedloraError` before any training when ``adapter_dir`` is a non-empty directory that is no
    adapter, or when ``resume`` finds checkpoints of another run.
    """
    check_replaceable(adapter_dir, ADAPTER_MARKERS, what="an adapter")
    if not resume:
        if checkpoints.exists():
            log.info("removing stale checkpoints of an earlier run in %s", checkpoints)
            shutil.rmtree(checkpoints)
        checkpoints.mkdir(parents=True, exist_ok=True)
        _write(checkpoints / FINGERPRINT_FILE, fingerprint)
        return None
    recorded = _read(checkpoints / FINGERPRINT_FILE) if checkpoints.is_dir() else None
    usable = complete_checkpoints(checkpoints)
    if not usable:
        if recorded is not None and recorded != fingerprint:
            raise MedloraError(_refusal(checkpoints, recorded, fingerprint))
        log.warning("--resume: no complete checkpoint in %s, training from the start", checkpoints)
        if checkpoints.exists():
            shutil.rmtree(checkpoints)
        checkpoints.mkdir(parents=True, exist_ok=True)
        _write(checkpoints / FINGERPRINT_FILE, fingerprint)
        return None
    last = usable[-1]
    for found in (recorded, _read(last / FINGERPRINT_FILE)):
        if found != fingerprint:
            raise MedloraError(_refusal(last, found, fingerprint))
    for stray in checkpoints.iterdir():  # killed mid-save: newer but incomplete, HF would otherwise pick it
        match = _CHECKPOINT.match(stray.name)
        if match and stray.is_dir() and int(match.group(1)) > int(_CHECKPOINT.match(last.name).group(1)):  # type: ignore[union-attr]
            log.warning("removing incomplete checkpoint %s (the run was stopped while saving it)", stray.name)
            shutil.rmtree(stray)
    return str(last)


def _refusal(where: Path, recorded: dict[str, Any] | None, current: dict[str, Any]) -> str:
    if recorded is None:
        return (f"refusing to resume from {where}: it records no data/config fingerprint (an older medlora or "
                "another tool wrote it), so it may belong to another run; train without --resume")
    return (f"refusing to resume from {where}: it belongs to a run with other settings or data: "
            f"{'; '.join(_differences(recorded, current))}. Train without --resume to start fresh (the old "
            "checkpoints are then removed)")


def clear_checkpoints(checkpoints: Path) -> None:
    """Remove a finished run's checkpoints: the adapter is saved, and they must not seed a later resume."""
    shutil.rmtree(checkpoints, ignore_errors=True)


class FingerprintCallback(TrainerCallback):
    """Writes the run's fingerprint into each checkpoint once HF has finished saving it."""

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.fingerprint = fingerprint

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            _write(checkpoint / FINGERPRINT_FILE, self.fingerprint)


__all__ = ["FINGERPRINT_FILE", "FingerprintCallback", "clear_checkpoints", "complete_checkpoints",
           "prepare_checkpoints", "run_fingerprint"]
