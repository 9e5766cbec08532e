"""Turn ``models.llm.name`` into something ``from_pretrained`` can open.

Three kinds of names: ``embedded:<key>`` (shipped in a wheel, converted once to a cache), a local directory,
or a hub id such as ``google/flan-t5-xl``. A hub id that cannot be reached fails with a message that says so
and how to point at a local directory instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medlora.errors import ModelNotAvailableError
from medlora.models import embedded


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights live (``location``) and the name to record in adapters (``base_model_id``)."""

    name: str
    location: str
    kind: str  # "embedded" | "local" | "hub"
    base_model_id: str


def resolve_model(name: str, cache_dir: str | Path | None = None, *, accept_terms: bool = False) -> ResolvedModel:
    """``accept_terms``: the user accepted the terms of an embedded model that has them (Gemma)."""
    if name.startswith(embedded.EMBEDDED_PREFIX):
        model = embedded.lookup(name)
        location = embedded.ensure_converted(name, cache_dir, accept_terms=accept_terms)
        return ResolvedModel(name=name, location=str(location), kind="embedded", base_model_id=model.upstream_id)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(
                f"{path}: a local model directory needs a config.json (save_pretrained layout)")
        return ResolvedModel(name=name, location=str(path.resolve()), kind="local", base_model_id=str(path.resolve()))
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return ResolvedModel(name=name, location=name, kind="hub", base_model_id=name)
    known = ", ".join(embedded.EMBEDDED_PREFIX + key for key in embedded.EMBEDDED_MODELS)
    raise ModelNotAvailableError(
        f"model '{name}' is neither an embedded model ({known}), "
        "an existing local directory, nor a hub id like google/flan-t5-xl"
    )


def hub_unreachable_message(name: str, err: Exception) -> str:
    return (
        f"could not load '{name}' from the model hub ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        "If this machine is offline, download the model elsewhere with `huggingface-cli download "
        f"{name} --local-dir DIR`, copy DIR here and set models.llm.name to that directory."
    )
