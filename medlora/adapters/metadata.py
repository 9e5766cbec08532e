"""An adapter's ``medlora.json`` metadata: read, write (with its card), and the evaluations it records.

Keeping the facts in JSON and rendering the card from them means evaluation can add its metrics later and
the card is re-rendered, never hand-edited into disagreement with the numbers.

Evaluations are kept per evaluation data set (``evaluations``, keyed by the data set's hash). The card's
headline ``metrics`` — and the verdict ``push`` and the bot show — are those of the adapter's own test split:
evaluating it once on another data set must not replace (or launder) the verdict on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlora.adapters.card import render_model_card
from medlora.adapters.layout import CARD_FILE, METADATA_FILE
from medlora.errors import MedloraError


def read_metadata(adapter_dir: str | Path) -> dict[str, Any]:
    """``medlora.json`` as a dict (empty when absent); a corrupt file is a :class:`MedloraError` naming it."""
    path = Path(adapter_dir) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise MedloraError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise MedloraError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); restore it from the "
                           "adapter's training output or delete it") from None
    if not isinstance(data, dict):
        raise MedloraError(f"{path}: expected a JSON object")
    return data


def record_evaluation(metadata: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Add one evaluation ``entry`` (with its ``dataset_hash``) to ``metadata``; return ``metadata``.

    One entry per data set: a re-evaluation on the same data replaces its own entry only. ``metrics`` follows
    the adapter's own data set (or the latest, for an adapter whose training data is unknown).
    """
    key = str(entry.get("dataset_hash") or "unknown")
    evaluations = metadata.get("evaluations")
    evaluations = dict(evaluations) if isinstance(evaluations, dict) else {}
    evaluations[key] = entry
    metadata["evaluations"] = evaluations
    own = own_dataset_hash(metadata)
    if own is None or key == own:
        metadata["metrics"] = entry
    return metadata


def own_dataset_hash(metadata: dict[str, Any]) -> str | None:
    """The hash of the data the adapter was trained on (its test split is the one its verdict counts on)."""
    data = metadata.get("data")
    value = data.get("dataset_hash") if isinstance(data, dict) else None
    return str(value) if value else None


def evaluation_for(metadata: dict[str, Any], dataset_hash: str | None = None) -> dict[str, Any] | None:
    """The evaluation on ``dataset_hash`` (default: the adapter's own data), or ``None`` if there is none."""
    wanted = dataset_hash or own_dataset_hash(metadata)
    evaluations = metadata.get("evaluations")
    if isinstance(evaluations, dict) and wanted and isinstance(evaluations.get(wanted), dict):
        return evaluations[wanted]
    metrics = metadata.get("metrics")
    if isinstance(metrics, dict) and (wanted is None or metrics.get("dataset_hash") == wanted):
        return metrics  # cards written before per-data-set entries existed
    return None


def gate_verdict(metadata: dict[str, Any], dataset_hash: str | None = None) -> bool | None:
    """``gate_passed`` of :func:`evaluation_for` (``None``: not evaluated on that data, or no gate)."""
    entry = evaluation_for(metadata, dataset_hash)
    value = entry.get("gate_passed") if entry else None
    return value if isinstance(value, bool) else None


def write_metadata(adapter_dir: str | Path, metadata: dict[str, Any]) -> None:
    """Write ``medlora.json`` and re-render ``README.md`` from it."""
    adapter_dir = Path(adapter_dir)
    (adapter_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8")
    (adapter_dir / CARD_FILE).write_text(render_model_card(metadata), encoding="utf-8")
