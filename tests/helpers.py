"""Builders shared by the tests: tiny adapters, a word-only model, a small index and router, a live server.

Test modules import these from here (``from helpers import ...``), never from one another; fixtures live in
conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationConfig

from medlora.config import MedloraConfig
from medlora.retrieval import Source, SourceIndex
from medlora.service.routing import SpecialtyRouter
from medlora.adapters.metadata import write_metadata

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MEDLORA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

DERM_Q = "What does a melanoma look like on the skin?"
CARD_Q = "How is atrial fibrillation of the heart treated?"


def make_adapter(base_dir: Path, out_dir: Path, specialty: str, *, seed: int = 1, scale: float = 0.5,
                 base_id: str | None = None, targets: tuple[str, ...] | None = None) -> Path:
    """Save a LoRA adapter with random B weights (not a no-op) and medlora metadata, like training does."""
    config = json.loads((Path(base_dir) / "config.json").read_text())
    seq2seq = bool(config.get("is_encoder_decoder"))
    cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = cls.from_pretrained(base_dir)
    torch.manual_seed(seed)  # LoRA A is initialised from the global generator: same adapter in any test order
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=list(targets or (("q", "v") if seq2seq else ("q_proj", "v_proj"))),
                      task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM)
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    adapter_config = json.loads((out_dir / "adapter_config.json").read_text())
    base_id = base_id or str(Path(base_dir).resolve())
    adapter_config["base_model_name_or_path"] = base_id
    (out_dir / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    write_metadata(out_dir, {"specialty": specialty, "base_model": {"id": base_id, "name": base_id},
                             "hyperparameters": {"r": 4}})
    return out_dir


def make_wordy_model(base_dir: Path, out_dir: Path, tokenizer) -> Path:
    """A copy of the tiny model that may only generate whole words (space-prefixed alphabetic tokens).

    A random model otherwise emits byte junk without spaces, which a word-by-word streamer (transformers'
    TextIteratorStreamer) sends in one piece; words make streaming observable and deterministic.
    """
    shutil.copytree(base_dir, out_dir)
    words = {i for token, i in tokenizer.get_vocab().items() if token.startswith("Ġ") and token[1:].isalpha()}
    generation = GenerationConfig.from_pretrained(out_dir)
    generation.suppress_tokens = sorted(set(range(len(tokenizer))) - words)
    # Greedy on a random model repeats one word, which the loop cut (rightly) ends after one word: distinct
    # words keep the answer long enough for streaming to be observable.
    generation.no_repeat_ngram_size = 1
    generation.save_pretrained(out_dir)
    return out_dir


def make_index() -> SourceIndex:
    """A four-document index with links, so answers have sources to cite."""
    docs = [
        ("Melanoma", "https://example.org/melanoma",
         "Melanoma is a skin cancer; look for asymmetry, irregular border, color variation and a growing mole."),
        ("Psoriasis", "https://example.org/psoriasis",
         "Psoriasis causes red skin plaques with silvery scale on elbows and knees."),
        ("Atrial fibrillation", "https://example.org/afib",
         "Atrial fibrillation is an irregular heart rhythm treated with rate control and anticoagulation."),
        ("Heart failure", "https://example.org/heart-failure",
         "Heart failure is treated with beta blockers, ACE inhibitors and diuretics."),
    ]
    return SourceIndex.build([
        (Source(source_id=f"test:{i}", title=title, url=url, text=text[:60], corpus="test"), f"{title} {text}")
        for i, (title, url, text) in enumerate(docs)
    ])


def make_router(threshold: float = 0.6) -> SpecialtyRouter:
    derm = ["What causes an itchy skin rash?", "How is psoriasis of the skin treated?", "Is this mole a melanoma?",
            "What is eczema of the skin?", "How do I treat acne on my face?", "What does a skin biopsy show?"]
    card = ["What causes chest pain in the heart?", "How is atrial fibrillation treated?",
            "What is heart failure?", "How is high blood pressure in the heart treated?",
            "What does an abnormal ECG of the heart mean?", "What is a heart attack?"]
    return SpecialtyRouter.fit(derm + card, ["dermatology"] * 6 + ["cardiology"] * 6, threshold=threshold)


def service_config(base_dir: Path, adapters_dir: Path, **overrides) -> MedloraConfig:
    values = {"models.llm.name": str(base_dir), "models.llm.adapters_dir": str(adapters_dir),
              "service.max_new_tokens": 10, "service.top_k_sources": 2}
    values.update(overrides)
    return MedloraConfig().with_overrides(values)


def make_pairs(n: int, prefix: str = "Condition") -> list[dict]:
    """``n`` distinct QA pairs over ``n // 2`` foci (two questions per disease, to exercise group splits)."""
    pairs = []
    for i in range(n):
        focus = f"{prefix} {i // 2}"
        pairs.append({
            "input": f"What is the first-line treatment of {focus.lower()} variant {i}?",
            "output": f"For {focus.lower()} the first-line treatment is topical therapy number {i} with follow-up.",
            "focus": focus,
        })
    return pairs


def pipeline_config(model_dir, qa_jsonl, tmp_path) -> MedloraConfig:
    """A config that prepares, trains and evaluates a tiny model on ``qa_jsonl`` in seconds."""
    terms = tmp_path / "tiny.txt"
    terms.write_text("condition\n", encoding="utf-8")
    return MedloraConfig().with_overrides({
        "models.llm.name": str(model_dir),
        "data.specialty": str(terms),
        "data.sources": [str(qa_jsonl)],
        "data.test_fraction": 0.2,
        "training.epochs": 1,
        "training.batch_size": 4,
        "training.gradient_accumulation_steps": 1,
        "training.max_length": 64,
        "training.save_steps": 5,
        "evaluation.max_new_tokens": 8,
        "evaluation.batch_size": 4,
        "evaluation.latency_samples": 0,
        "evaluation.modes": ["closed", "open"],
        "evaluation.max_samples": 6,
        "evaluation.bootstrap_resamples": 100,
        "evaluation.outside": False,
        "evaluation.medquad_dir": "",  # the index is the built-in sets only: fast, and the same on every machine
        "evaluation.abstracts_csv": "",
        "evaluation.hpo_sources": False,
    })


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a random free port of 127.0.0.1 in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
