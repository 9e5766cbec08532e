"""The ``medlora`` command line.

``common`` holds what every command shares (console, options, config loading, errors); each command group has
its own module (``pipeline``: prepare/train/evaluate/demo, ``bot``: chat/serve/merge/push, ``data``: data
download); ``main`` builds the Typer app from them.
"""

from medlora.cli.main import app, run_subcommand

__all__ = ["app", "run_subcommand"]
