"""The ``config.yaml`` schema, in the shape of the original design note.

Why pydantic with ``extra="forbid"``: a typo such as ``quantisation:`` must fail loudly, naming the key and the
file, instead of being ignored and silently training or serving with defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

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


class ModelsConfig(_Strict):
    llm: LLMConfig = Field(default_factory=LLMConfig)


class DataConfig(_Strict):
    """``data``: where QA pairs come from and how they are filtered and split."""

    specialty: str = "dermatology"
    sources: list[str] = Field(default_factory=lambda: ["builtin", "medquad:auto"])
    output_dir: str = "data/processed/{specialty}"
    validation_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.1, ge=0.0, lt=0.5)
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
    max_length: int = Field(512, ge=16)
    # Share of training questions shown with sources in the prompt and answered citing them as [n].
    cited_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    seed: int = 42


class GateConfig(_Strict):
    """Minimum lift of the adapter over the base, per metric, for ``evaluate --gate``."""

    margins: dict[str, float] = Field(default_factory=lambda: {"bleu": 0.0, "rouge_l": 0.0})


class EvaluationConfig(_Strict):
    """``evaluation``: what ``medlora evaluate`` measures and how many samples each costly metric gets.

    The defaults keep a full evaluation of the embedded 135M model to a few minutes on 2 CPU cores.
    """

    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(8, ge=1)
    max_samples: int | None = Field(None, ge=1)
    metrics: list[str] = Field(default_factory=lambda: [
        "bleu", "rouge_l", "terminology_recall", "terminology_precision", "diagnostic_accuracy_mc",
        "diagnostic_accuracy_free", "citation_relevance", "citation_coverage", "citations_invented",
        "language_match", "language_match_en", "language_match_fr"])
    output_dir: str = "reports/{specialty}"
    gate: GateConfig = Field(default_factory=GateConfig)
    seed: int = 42
    # Diagnostic vignettes (from the test split's MedQuAD "symptoms" answers) and their answer budget.
    vignettes: int = Field(24, ge=0)
    vignette_max_new_tokens: int = Field(32, ge=1)
    # Questions answered with retrieved sources in the prompt (citation metrics), and sources per prompt.
    cited_answers: int = Field(16, ge=0)
    citation_top_k: int = Field(3, ge=1)
    # Latency benchmark: answers per variant (base, adapter, merged; 0 = skip) and their fixed length.
    latency_samples: int = Field(4, ge=0)
    latency_max_new_tokens: int = Field(32, ge=1)
    # Data for the vocabulary and the citation index: "auto" = $MEDQUAD_DIR / ../shared/data, "" = none.
    medquad_dir: str = "auto"
    abstracts_csv: str = "auto"
    cache_dir: str | None = None  # vocabulary and index cache (default: the medlora cache)


class ServiceConfig(_Strict):
    max_new_tokens: int = Field(192, ge=1)
    retrieval: bool = True
    top_k_sources: int = Field(3, ge=0)
    admin_token_env: str = "MEDLORA_ADMIN_TOKEN"
    # adapter="auto": below this top-class probability the question goes to the base model instead.
    routing_threshold: float = Field(0.6, ge=0.0, le=1.0)
    # The server collects concurrent requests this long, then answers them in one mixed-adapter batch.
    batch_window_ms: int = Field(10, ge=0)
    max_batch_size: int = Field(8, ge=1)
    # Question text stays out of logs unless an operator opts in (patient data).
    log_questions: bool = False


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


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (models:, data:, training:, ...)")
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
    raw: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    if preset:
        raw = _deep_merge(raw, _read_yaml(preset_path(preset)))
        source += f" + preset {preset}"
    return _validate(raw, source=source)
