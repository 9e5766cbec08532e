"""The ``medlora`` command: a thin Typer layer over the library. Flags override config.yaml values."""

from __future__ import annotations

import sys

import typer

from medlora.cli import bot, data, pipeline
from medlora.cli.common import PrecisionOpt, apply_precision

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _global_options(precision: PrecisionOpt = None) -> None:
    """`medlora --precision fp32|bf16|auto COMMAND` (e.g. before `serve`): the precision for the whole process."""
    apply_precision(precision)


# Registration order is the order `medlora --help` lists the commands in.
pipeline.register(app)  # prepare, train, evaluate, demo
bot.register(app)  # chat, serve, merge, push
data.register(app)  # data download


def run_subcommand(name: str, argv: list[str] | None = None) -> None:
    """Entry point for the scripts/ wrappers: ``scripts/train_lora_adapter.py --epochs 3`` == ``medlora train``."""
    command = typer.main.get_command(app)
    command.main(args=[name, *(sys.argv[1:] if argv is None else argv)], prog_name=f"medlora {name}")
