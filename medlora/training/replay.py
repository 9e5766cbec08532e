"""Self-distillation replay: keep the base model's behaviour where the adapter is not meant to change it.

Why: an adapter trained only on one specialty's answers also moves what the model does elsewhere. The round-9
demo adapter answered "Yes" to 6 % of yes/no questions over medical abstracts it never saw, where the base said
"Yes" to 16 % (docs/RESULTS.md) — judgements flipped outside the specialty, which the forgetting check flags.

Replay rows pose general prompts (``replay_prompts.txt``, team-written, outside every specialty) and take as
targets **samples of the base model's own answers**, drawn before the adapter exists. Cross-entropy on samples
of the base's distribution is a Monte Carlo estimate of KL(base ‖ adapter) on those prompts, so the ordinary
Trainer minimises it beside the specialty loss — Learning without Forgetting (Li & Hoiem, 2016) with sampled
rather than soft targets, and no change to the loss. Greedy targets would not do: they teach the base's most
likely answer every time, which sharpens its distribution and so moves it too.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from medlora.data.records import QARecord
from medlora.models.generation import generate_answers
from medlora.models.loading import LoadedModel
from medlora.models.prompts import build_prompt

log = logging.getLogger(__name__)

REPLAY_PROMPTS = Path(__file__).with_name("replay_prompts.txt")
REPLAY_SOURCE = "replay"


def replay_prompts(path: Path = REPLAY_PROMPTS) -> list[str]:
    """The replay prompts of ``path``: one per line, ``#`` comments and blank lines skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def replay_records(
    loaded: LoadedModel,
    n: int,
    seed: int,
    max_new_tokens: int,
    *,
    prompts: list[str] | None = None,
    batch_size: int = 32,
) -> list[QARecord]:
    """Up to ``n`` closed-book rows: the prompts in a seeded order (cycled when ``n`` exceeds them), each
    answered by one sample of ``loaded``'s model — call it before any adapter is attached.

    A sample that hit ``max_new_tokens`` or looped is dropped rather than kept: its target would end in the
    end-of-sequence token the model never chose, and teach it to stop short.
    """
    pool = prompts if prompts is not None else replay_prompts()
    if n <= 0 or not pool:
        return []
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < n:
        block = list(pool)
        rng.shuffle(block)
        order += block
    order = order[:n]
    formatted = [build_prompt(loaded.tokenizer, loaded.spec, q) for q in order]
    # Seeded here, so the same config draws the same targets whatever ran before in this process.
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        answers = generate_answers(loaded.model, loaded.tokenizer, loaded.spec, formatted,
                                   max_new_tokens=max_new_tokens, batch_size=batch_size, copy_limit=None,
                                   sampled=True)
    finally:
        torch.random.set_rng_state(state)
    records = [QARecord(q, a.text, REPLAY_SOURCE, qtype=REPLAY_SOURCE) for q, a in zip(order, answers, strict=True)
               if a.text and not a.loop_stopped and a.new_tokens < max_new_tokens]
    log.info("replay: %d of %d sampled base answers kept as training rows", len(records), n)
    return records
