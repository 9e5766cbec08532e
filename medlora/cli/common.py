"""What every ``medlora`` command shares: the console, the common options, config loading, logging, errors."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from medlora.config import MedloraConfig, load_config
from medlora.errors import MedloraError

console = Console()

T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="config.yaml to read (default: ./config.yaml if present)")
]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="a packaged preset layered on the config (demo)")]
PrecisionOpt = Annotated[str | None, typer.Option(
    "--precision", help="auto (a cached per-machine probe picks bf16 only where it measured faster) | fp32 | bf16")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="base model: embedded:..., a hub id or a local dir")]
AdaptersDirOpt = Annotated[
    str | None, typer.Option("--adapters-dir", help="directory scanned for adapters (models.llm.adapters_dir)")
]


def run(fn: Callable[[], T]) -> T:
    """Print a MedloraError as one clean line and exit 2, instead of a traceback."""
    try:
        return fn()
    except MedloraError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from None


def apply_precision(precision: str | None) -> None:
    from medlora.models.precision import set_process_precision  # torch: only when a command runs

    try:
        set_process_precision(precision)
    except ValueError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from None


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)], force=True)
    logging.getLogger("medlora").setLevel(logging.DEBUG if verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Library deprecation chatter (peft calling renamed transformers APIs) is not the user's to act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging  # transformers: only when a command runs

    hf_logging.set_verbosity_error()


def config_from(path: Path | None, preset: str | None, overrides: dict[str, Any]) -> MedloraConfig:
    """config.yaml (the given one, else ./config.yaml if present, else the defaults), a preset, then flags."""
    if path is None and Path("config.yaml").is_file():
        path = Path("config.yaml")
    return load_config(path, preset=preset).with_overrides(overrides)


def paths(cfg: MedloraConfig) -> tuple[Path, Path, Path]:
    """The configured data, adapter and report directories of ``cfg``'s specialty."""
    specialty = Path(cfg.data.specialty).stem
    return (
        Path(cfg.data.output_dir.format(specialty=specialty)),
        Path(cfg.training.output_dir.format(specialty=specialty)),
        Path(cfg.evaluation.output_dir.format(specialty=specialty)),
    )


def demo_paths(cfg: MedloraConfig) -> tuple[Path, Path, Path]:
    """The demo preset's own data, adapter and report paths (``<specialty>-demo``).

    A demo run must never write over a full-recipe run of the same specialty: its data would replace the
    split that adapter was trained and judged on, and its adapter the one that took hours.
    """
    specialty = f"{Path(cfg.data.specialty).stem}-demo"
    return (
        Path(cfg.data.output_dir.format(specialty=specialty)),
        Path(cfg.training.output_dir.format(specialty=specialty)),
        Path(cfg.evaluation.output_dir.format(specialty=specialty)),
    )
