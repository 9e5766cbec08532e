"""Checks on an adapter directory's files and base before it is put on a base model; the one safe way to load it.

Why the tensor check: PEFT loads every tensor it finds in ``adapter_model.safetensors`` into the model, not
only the LoRA matrices. An adapter that carries ``modules_to_save``, ``lm_head`` or embedding weights replaces
those of the shared base — for every other adapter and for ``base`` too — and a config can ask PEFT to
rewrite base weights while loading (PiSSA-style init, layer replication). So before any load the safetensors
header is read (no tensor data, no pickle) and only LoRA ``A``/``B`` matrices on attention/MLP projections are
accepted. The service, evaluation, merge and push all go through these checks.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlora.adapters.layout import ADAPTER_CONFIG, PICKLE_WEIGHTS, SAFETENSORS_WEIGHTS
from medlora.errors import AdapterMismatchError, MedloraError

if TYPE_CHECKING:
    from medlora.models.loading import LoadedModel

_LORA_KEY = re.compile(r"^[A-Za-z0-9_.]+\.lora_[AB]\.weight$")
# Module names that are not LoRA targets a medical adapter needs: a delta there changes every answer's
# vocabulary or output layer.
_FORBIDDEN_MODULE = re.compile(r"(^|\.)(lm_head|embed_tokens|embed_positions|wte|wpe|shared|embeddings?|"
                               r"modules_to_save|trainable_tokens)(\.|$)")
_MAX_HEADER_BYTES = 16 * 1024 * 1024
# Config values that make PEFT change the base model itself while loading.
_ALLOWED_INIT = (True, False, "gaussian")


class UnsafeAdapterError(MedloraError):
    """The adapter holds more than LoRA matrices, or its files are corrupt."""


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """Parse ``adapter_config.json``; a missing, non-UTF-8 or non-JSON file is one clear error."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise MedloraError(f"{adapter_dir}: not a PEFT adapter directory (no {ADAPTER_CONFIG}); train one first")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise MedloraError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); re-save the adapter") from None
    except json.JSONDecodeError as err:
        raise MedloraError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); re-save the adapter") from None
    if not isinstance(config, dict):
        raise MedloraError(f"{path}: expected a JSON object")
    return config


def check_lora_config(config: dict[str, Any], where: str | Path) -> None:
    """Refuse config options that load more than LoRA deltas or rewrite base weights on load."""
    problems = []
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        problems.append(f"peft_type is {peft_type!r}, only LORA adapters are served")
    for key in ("modules_to_save", "trainable_token_indices", "layer_replication"):
        if config.get(key):
            problems.append(f"{key} is set ({config[key]!r}): it would replace or copy weights of the shared base")
    if config.get("use_dora"):
        problems.append("use_dora is set: DoRA magnitude vectors are not plain LoRA")
    init = config.get("init_lora_weights", True)
    if init not in _ALLOWED_INIT:
        problems.append(f"init_lora_weights is {init!r}: this initialisation rewrites base weights while loading")
    targets = config.get("target_modules")
    names = [targets] if isinstance(targets, str) else list(targets or [])
    bad = [t for t in names if isinstance(t, str) and _FORBIDDEN_MODULE.search(t)]
    if bad:
        problems.append(f"target_modules include {bad}: LoRA on the embeddings or the output layer is not accepted")
    if problems:
        raise UnsafeAdapterError(f"{where}: refused: " + "; ".join(problems))


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file, read from its header only; a truncated file is an error.

    The format is an 8-byte little-endian header length, a JSON header with each tensor's byte range, then
    the data: a file shorter than the largest range was cut off (an interrupted copy or download).
    """
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise UnsafeAdapterError(f"{path}: truncated ({size} bytes): not a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(size - 8, _MAX_HEADER_BYTES):
                raise UnsafeAdapterError(f"{path}: corrupt or truncated safetensors header ({length} bytes announced,"
                                         f" file has {size})")
            header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnsafeAdapterError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise UnsafeAdapterError(f"{path}: corrupt safetensors header")
    end = 0
    keys = []
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise UnsafeAdapterError(f"{path}: corrupt safetensors header entry for {key!r}")
        end = max(end, offsets[1])
        keys.append(key)
    if 8 + length + end > size:
        raise UnsafeAdapterError(f"{path}: truncated: the header needs {8 + length + end} bytes, the file has "
                                 f"{size}; copy or download the adapter again")
    return keys


def check_adapter_weights(adapter_dir: Path) -> list[str]:
    """Accept ``adapter_model.safetensors`` only when every tensor is a LoRA A/B matrix; return the keys."""
    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / SAFETENSORS_WEIGHTS
    if not weights.is_file():
        if (adapter_dir / PICKLE_WEIGHTS).is_file():
            raise MedloraError(
                f"{adapter_dir}: only {PICKLE_WEIGHTS} (pickle) found; medlora loads safetensors only because "
                "pickle files can run code. Convert it once where you trust the file: "
                "PeftModel.from_pretrained(base, DIR).save_pretrained(DIR, safe_serialization=True)"
            )
        raise MedloraError(f"{adapter_dir}: no {SAFETENSORS_WEIGHTS}; the adapter weights are missing")
    keys = safetensors_keys(weights)
    if not keys:
        raise UnsafeAdapterError(f"{weights}: holds no tensors")
    foreign = [k for k in keys if not _LORA_KEY.match(k) or _FORBIDDEN_MODULE.search(k.rsplit(".lora_", 1)[0])]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UnsafeAdapterError(
            f"{weights}: refused: {len(foreign)} tensor(s) are not LoRA A/B matrices ({shown}); such tensors "
            "would overwrite weights of the shared base model. Re-save the adapter without modules_to_save"
        )
    return keys


def check_adapter_files(adapter_dir: Path) -> dict[str, Any]:
    """All file checks before a load: config parses and is plain LoRA, weights are LoRA-only safetensors."""
    config = read_adapter_config(adapter_dir)
    check_lora_config(config, adapter_dir)
    check_adapter_weights(adapter_dir)
    return config


def check_adapter_base(adapter_dir: Path, loaded: LoadedModel) -> None:
    """Refuse an adapter trained on another base: its weights would load silently and answer garbage."""
    expected = read_adapter_config(adapter_dir).get("base_model_name_or_path")
    if expected and expected not in (loaded.source.base_model_id, loaded.source.name, loaded.source.location):
        raise AdapterMismatchError(
            f"{adapter_dir} was trained on '{expected}' but the loaded base is '{loaded.source.base_model_id}'; "
            "set models.llm.name to the adapter's base model"
        )


def load_lora(model: Any, adapter_dir: Path, adapter_name: str = "default") -> Any:
    """``PeftModel.from_pretrained`` after :func:`check_adapter_files`, reading safetensors only.

    PEFT prefers ``adapter_model.safetensors`` when it exists, and the check has made sure it does (a
    pickle-only adapter is refused before PEFT sees it). Evaluation and merging use this; the service runs the
    same checks and then adds adapters to one ``PeftModel``.
    """
    from peft import PeftModel

    check_adapter_files(adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name)
