"""``python -m medlora.cli …`` (used by ``accelerate launch -m medlora.cli train``) is the ``medlora`` command."""

from medlora.cli.main import app

app()
