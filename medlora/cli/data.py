"""``medlora data …``: dataset commands (``download``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medlora.cli.common import console, run
from medlora.data.download import DATASETS, download_dataset

data_app = typer.Typer(no_args_is_help=True, help="Datasets: download the public corpora medlora trains on.")


@data_app.command("download")
def download(
    name: Annotated[str, typer.Argument(help="medquad or abstracts")],
    url: Annotated[str | None, typer.Option(help="download from here instead (a mirror, or a file:// URL)")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected checksum instead of the pinned one")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="install under this folder (default: $MEDLORA_DATA_DIR "
                                                        "or the medlora cache's data/)")] = None,
    timeout: Annotated[float, typer.Option(help="network timeout in seconds")] = 60.0,
) -> None:
    """Fetch a dataset from its public source, verify its checksum and install it where `auto` sources look."""
    target = run(lambda: download_dataset(name, url=url, sha256=sha256, directory=data_dir, timeout=timeout,
                                          progress=console.print))
    spec = DATASETS[name]
    console.print(f"[bold green]{spec.title}[/] installed in {target} (checksum verified).")
    console.print(f"License: {spec.license}. Attribution: {spec.attribution}")
    console.print(f"Source: {spec.homepage}. Attribute it wherever you share data or adapters trained on it.")
    console.print(f"`{name}:auto` sources now find it (unless {spec.env_var} points elsewhere).")


def register(app: typer.Typer) -> None:
    """Add ``medlora data …`` to the ``medlora`` app."""
    app.add_typer(data_app, name="data")
