"""Shared fixtures: tiny random Llama and T5 models with a tiny byte-level BPE tokenizer, built offline.

Builders that are plain functions (adapters, indexes, configs, a live server) are in helpers.py.

The models are random, so tests assert mechanics (shapes, files, reloads, equivalences), never quality.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Before anything imports huggingface_hub, which reads these once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import SHARED_DATA, make_pairs, make_wordy_model  # noqa: E402


_CORPUS = [
    "What are the ABCDE criteria for melanoma? Asymmetry, border irregularity, color variegation, diameter "
    "above 6 mm and evolution.",
    "Psoriasis shows well demarcated erythematous plaques with silvery scale on extensor surfaces.",
    "Atrial fibrillation is an irregularly irregular rhythm; anticoagulation follows the CHA2DS2-VASc score.",
    "Heart failure with reduced ejection fraction is treated with beta blockers and ACE inhibitors.",
    "Basal cell carcinoma presents as a pearly papule with arborizing telangiectasia on dermoscopy.",
    "Question: Answer: Sources: Using the sources above and citing them as [1], answer the medical question.",
]


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "</s>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return _train_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.bos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tiny_tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
        num_heads=4, pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        decoder_start_token_id=tiny_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-t5")
    T5ForConditionalGeneration(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wordy_llama_dir(tiny_llama_dir, tiny_tokenizer, tmp_path_factory) -> Path:
    """The tiny Llama restricted to whole words, so streamed answers arrive word by word."""
    return make_wordy_model(tiny_llama_dir, tmp_path_factory.mktemp("wordy") / "llama", tiny_tokenizer)


@pytest.fixture
def qa_jsonl(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in make_pairs(40)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def medquad_dir() -> Path:
    path = SHARED_DATA / "medquad"
    if not path.is_dir():
        pytest.skip(f"MedQuAD not found at {path} (set MEDLORA_SHARED_DATA to the folder holding medquad/)")
    return path


@pytest.fixture(scope="session")
def abstracts_csv() -> Path:
    path = SHARED_DATA / "medical_abstracts" / "medical_tc_test.csv"
    if not path.is_file():
        pytest.skip(f"medical abstracts not found at {path} (set MEDLORA_SHARED_DATA)")
    return path
