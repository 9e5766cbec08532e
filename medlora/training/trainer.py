"""``medlora train``: PEFT LoRA on a base model with the HF Trainer, saved atomically in the PEFT layout."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from medlora.adapters.layout import LOSS_CURVE_FILE, TRAINING_LOG_FILE
from medlora.adapters.metadata import write_metadata
from medlora.adapters.save import record_base_model, staged_adapter
from medlora.config import MedloraConfig
from medlora.data.prepare import load_manifest, load_split
from medlora.models.loading import LoadedModel, load_from_config
from medlora.models.precision import probe, requested_precision, resolve_precision, torch_threads
from medlora.models.quantization import is_quantized
from medlora.retrieval import configured_index, leakage_filter
from medlora.training.batching import plan_batching
from medlora.training.checkpoints import FingerprintCallback, clear_checkpoints, prepare_checkpoints, run_fingerprint
from medlora.training.distill import DistillationReplay, build_replay
from medlora.training.encoding import Grounding, build_dataset
from medlora.training.lora import build_lora_config

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    adapter_dir: Path
    trainable_params: int
    total_params: int
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    train_tokens: int
    steps_run: int = 0  # optimizer steps taken by this run (fewer than total when resumed)
    resumed_from: str | None = None
    precision: str = "fp32"  # what the run trained in (bf16 = autocast)
    threads: int = 0  # torch threads during training (0 = torch's default)
    batching: str = ""  # the strategy training.batching resolved to (packed, grouped, padded)

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)


def _precision_flags(configured: str = "auto") -> dict[str, Any]:
    """bf16 autocast where the per-machine probe measured it faster (or ``--precision bf16``), else fp32.

    A CPU without native bf16 runs it hundreds of times slower, so CPUs train in fp32 unless measured otherwise;
    CUDA keeps mixed precision (fp16 where bf16 is unsupported) unless fp32 is asked for.
    """
    requested = requested_precision(configured)
    if not torch.cuda.is_available():
        return {"bf16": resolve_precision(configured) == "bf16", "fp16": False}
    if requested == "fp32":
        return {"bf16": False, "fp16": False}
    if torch.cuda.is_bf16_supported():
        return {"bf16": True, "fp16": False}
    return {"bf16": False, "fp16": True}


def grounding_of(tcfg: Any) -> Grounding:
    return Grounding(tcfg.grounded_fraction, tcfg.distractor_only_fraction, tcfg.related_only_fraction,
                     tcfg.top_k_sources, tcfg.citation_style, tcfg.max_source_overlap, tcfg.source_order,
                     tcfg.min_source_match)


def training_index(cfg: MedloraConfig, data_dir: str | Path) -> dict[str, Any]:
    """The bot's source index with every validation and test disease masked out (``index``/``mask`` kwargs).

    Grounded examples draw their distractors from it, so training never reads a held-out passage.
    """
    if cfg.training.grounded_fraction <= 0:
        return {}
    index = configured_index(cfg)
    if index is None:
        return {}
    held_out = [r for split in ("validation", "test") if (Path(data_dir) / f"{split}.jsonl").is_file()
                for r in load_split(data_dir, split)]
    return {"index": index, "mask": index.mask(leakage_filter(held_out))}


def _training_threads(configured: int) -> int:
    """``training.threads``, or on a CPU the probe's measured best thread count (0 leaves torch's default)."""
    if configured or torch.cuda.is_available():
        return configured
    return probe().threads


def checkpoint_dir_for(adapter_dir: Path) -> Path:
    return adapter_dir.with_name(adapter_dir.name + ".checkpoints")


def save_loss_curve(log_history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", marker=".")
    if evals:
        ax.plot(*zip(*evals, strict=True), label="validation loss", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_title("LoRA training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class _StepCounter(TrainerCallback):
    """Counts the optimizer steps this process actually ran (a resumed run skips the finished ones)."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps += 1


class ReplayTrainer(Trainer):
    """The HF Trainer plus, in training steps, the distillation replay's ``weight x KL(base || adapter)``.

    The KL is added per micro-batch and scaled as the Trainer scales the specialty loss over gradient
    accumulation; evaluation (the validation loss) leaves it out, so validation losses stay comparable with and
    without replay. The mean KL since the last log line is logged as ``replay_kl``.
    """

    def __init__(self, *args: Any, replay: DistillationReplay | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replay = replay
        self._kl_sum, self._kl_count = 0.0, 0

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        result: Any = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                           num_items_in_batch=num_items_in_batch)
        if self.replay is None or not model.training:
            return result
        kl = self.replay.loss(self.accelerator.unwrap_model(model))
        self._kl_sum, self._kl_count = self._kl_sum + kl.item(), self._kl_count + 1
        term = self.replay.weight * kl
        # The same rule as Trainer.training_step: a loss normalised by num_items_in_batch is not divided again.
        scaled_for_ga = self.loss_is_scaled_for_ga
        if scaled_for_ga is None:
            scaled_for_ga = bool((self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                                 or self.compute_loss_func is not None)
        if scaled_for_ga:
            term = term / self.current_gradient_accumulation_steps
        if return_outputs:
            loss, outputs = result
            return loss + term, outputs
        return result + term

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._kl_count and "loss" in logs:
            logs["replay_kl"] = round(self._kl_sum / self._kl_count, 5)
            self._kl_sum, self._kl_count = 0.0, 0
        super().log(logs, *args, **kwargs)


def train_adapter(
    cfg: MedloraConfig,
    data_dir: str | Path,
    adapter_dir: str | Path,
    *,
    resume: bool = False,
    loaded: LoadedModel | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``data_dir``'s train split and save it to ``adapter_dir``."""
    tcfg = cfg.training
    adapter_dir = Path(adapter_dir)
    # Before any loading: refuse a wrong output path or another run's checkpoints (medlora.training.checkpoints).
    checkpoints = checkpoint_dir_for(adapter_dir)
    fingerprint = run_fingerprint(cfg, load_manifest(data_dir))
    resume_from = prepare_checkpoints(checkpoints, adapter_dir, fingerprint, resume)
    loaded = loaded or load_from_config(cfg.models.llm)
    model, tokenizer, spec = loaded.model, loaded.tokenizer, loaded.spec
    replay = build_replay(loaded, tcfg)  # the base's continuations, before any adapter exists
    if is_quantized(model):
        model = prepare_model_for_kbit_training(model)
    # LoRA's A matrices are drawn from torch's RNG when the adapter is created, before the Trainer seeds
    # anything: without this, the same seed trained a different adapter on every run.
    set_seed(tcfg.seed)
    peft_model = get_peft_model(
        model, build_lora_config(tcfg, spec, getattr(model.config, "num_hidden_layers", None)))
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info("trainable params: %s || all params: %s || trainable%%: %.4f", f"{trainable:,}", f"{total:,}",
             100 * trainable / total)

    train_records = load_split(data_dir, "train")[: tcfg.max_train_samples]
    val_records = load_split(data_dir, "validation")[: tcfg.max_eval_samples]
    train_ds = build_dataset(train_records, tokenizer, spec, tcfg.max_length, grounding_of(tcfg), tcfg.seed,
                             **training_index(cfg, data_dir))
    val_ds = build_dataset(val_records, tokenizer, spec, tcfg.max_length) if val_records else None
    train_tokens = int(sum(len(ids) for ids in train_ds["input_ids"]) * tcfg.epochs)
    batching = plan_batching(tcfg.batching, spec, tokenizer, peft_model,
                             [train_ds[i] for i in range(min(2, len(train_ds)))])
    log.info("batching: %s (%s)", batching.strategy, batching.reason)

    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=tcfg.epochs,
        per_device_train_batch_size=tcfg.batch_size,
        per_device_eval_batch_size=tcfg.batch_size,
        gradient_accumulation_steps=tcfg.gradient_accumulation_steps,
        learning_rate=tcfg.learning_rate,
        warmup_steps=tcfg.warmup_ratio,  # a float below 1 is a ratio of total steps in transformers 5
        max_grad_norm=tcfg.max_grad_norm,
        logging_steps=tcfg.logging_steps,
        logging_first_step=True,
        disable_tqdm=False,  # progress bar even when transformers logging is quiet
        save_strategy="steps",
        save_steps=tcfg.save_steps,
        save_total_limit=2,
        eval_strategy="epoch" if val_ds is not None else "no",
        report_to=[],
        seed=tcfg.seed,
        data_seed=tcfg.seed,
        label_names=["labels"],
        prediction_loss_only=True,  # evaluation needs the loss alone: no logits gathered over the eval set
        remove_unused_columns=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy=batching.train_sampling_strategy,
        **_precision_flags(tcfg.precision),
    )
    collator = batching.collator
    counter = _StepCounter()
    trainer = ReplayTrainer(
        replay=replay,
        callbacks=[counter, FingerprintCallback(fingerprint)],
        model=peft_model,
        args=args,
        data_collator=collator,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
    )
    started = time.perf_counter()
    threads = _training_threads(tcfg.threads)
    with torch_threads(threads) if threads else contextlib.nullcontext():
        output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    # The epoch-end evaluation already measured the final weights when training ended on an epoch boundary.
    logged = [e for e in trainer.state.log_history if "eval_loss" in e]
    if val_ds is None:
        eval_loss = None
    elif logged and logged[-1]["step"] == trainer.state.global_step:
        eval_loss = logged[-1]["eval_loss"]
    else:
        eval_loss = trainer.evaluate()["eval_loss"]

    result = TrainResult(adapter_dir, trainable, total, output.training_loss, eval_loss, seconds, train_tokens,
                         steps_run=counter.steps, resumed_from=Path(resume_from).name if resume_from else None,
                         precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32", threads=threads,
                         batching=batching.strategy)
    if trainer.is_world_process_zero():  # under `accelerate launch` one process writes the adapter
        save_adapter(peft_model, loaded, cfg, data_dir, adapter_dir, trainer.state.log_history, result)
    trainer.accelerator.wait_for_everyone()
    clear_checkpoints(checkpoints)  # the adapter is saved: these must not seed a later --resume
    return result


def save_adapter(
    peft_model: PeftModel,
    loaded: LoadedModel,
    cfg: MedloraConfig,
    data_dir: str | Path,
    adapter_dir: Path,
    log_history: list[dict[str, Any]],
    result: TrainResult,
) -> None:
    """Write the PEFT layout plus card, log and curve into a staging dir, then swap it into place."""
    tcfg = cfg.training
    manifest = load_manifest(data_dir)
    with staged_adapter(adapter_dir) as staging:  # a retrain keeps the old one as .prev
        peft_model.save_pretrained(str(staging), safe_serialization=True)
        record_base_model(staging, loaded.source.base_model_id)
        (staging / TRAINING_LOG_FILE).write_text(
            json.dumps({"log_history": log_history, "result": _result_summary(result)}, indent=2), encoding="utf-8"
        )
        save_loss_curve(log_history, staging / LOSS_CURVE_FILE)
        metadata = {
            "specialty": manifest.get("specialty", cfg.data.specialty),
            "base_model": {
                "id": loaded.source.base_model_id,
                "name": loaded.source.name,
                "model_type": loaded.spec.model_type,
                "is_encoder_decoder": loaded.spec.is_encoder_decoder,
            },
            "parameters": {
                "trainable": result.trainable_params,
                "total": result.total_params,
                "trainable_percent": result.trainable_percent,
            },
            "hyperparameters": {
                "r": tcfg.lora_r, "lora_alpha": tcfg.lora_alpha, "lora_dropout": tcfg.lora_dropout,
                "target_modules": _target_modules(peft_model),
                "lora_targets": tcfg.lora_targets, "batching": result.batching,
                "epochs": tcfg.epochs, "batch_size": tcfg.batch_size,
                "gradient_accumulation_steps": tcfg.gradient_accumulation_steps,
                "learning_rate": tcfg.learning_rate, "warmup_ratio": tcfg.warmup_ratio,
                "max_grad_norm": tcfg.max_grad_norm, "max_length": tcfg.max_length,
                "max_train_samples": tcfg.max_train_samples, "grounded_fraction": tcfg.grounded_fraction,
                "distractor_only_fraction": tcfg.distractor_only_fraction,
                "related_only_fraction": tcfg.related_only_fraction, "top_k_sources": tcfg.top_k_sources,
                "citation_style": tcfg.citation_style, "max_source_overlap": tcfg.max_source_overlap,
                "source_order": tcfg.source_order, "replay_kl_weight": tcfg.replay_kl_weight,
                "replay_rows": tcfg.replay_rows, "replay_tokens": tcfg.replay_tokens, "seed": tcfg.seed,
            },
            "training": _result_summary(result),
            "data": {k: manifest.get(k) for k in ("dataset_hash", "counts", "sources", "filters")},
        }
        write_metadata(staging, metadata)


def _target_modules(peft_model: PeftModel) -> str:
    """The module names PEFT actually adapted (a preset or ``all-linear`` resolves only at wrap time)."""
    targets = peft_model.peft_config["default"].target_modules  # type: ignore[attr-defined]  # a LoraConfig
    return targets if isinstance(targets, str) else ",".join(sorted(targets))


def _result_summary(result: TrainResult) -> dict[str, Any]:
    return {
        "train_loss": round(result.train_loss, 4) if result.train_loss is not None else None,
        "validation_loss": round(result.eval_loss, 4) if result.eval_loss is not None else None,
        "seconds": round(result.seconds, 1),
        "train_tokens": result.train_tokens,
        "tokens_per_second": round(result.train_tokens / max(result.seconds, 1e-9), 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": result.precision,
        "threads": result.threads,
        "steps_run": result.steps_run,
        "resumed_from": result.resumed_from,
    }
