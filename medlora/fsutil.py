"""Atomic directory writes: a crash never leaves a half-written adapter, dataset or model cache.

Replacing a directory is also where work gets lost, so two guards live here: :func:`check_replaceable` refuses
to replace a non-empty directory that medlora did not write (``merge NAME data/models`` would otherwise
delete every adapter), and ``keep_previous`` keeps the replaced directory as ``NAME.prev`` (a retrain that
turns out worse can be undone).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from medlora.errors import MedloraError

PREVIOUS_SUFFIX = ".prev"


def previous_path(target: str | Path) -> Path:
    """Where :func:`atomic_directory` keeps the directory it replaced (``keep_previous=True``)."""
    target = Path(target)
    return target.with_name(target.name + PREVIOUS_SUFFIX)


def check_replaceable(target: str | Path, markers: Iterable[str], what: str) -> None:
    """Refuse a ``target`` that exists, is not empty and holds none of ``markers`` (files medlora writes).

    ``what`` names the artifact for the message (``"a merged model"``). Called before long work starts, so a
    wrong output path fails in a second, not after training.
    """
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise MedloraError(f"{target} exists and is a file; choose a directory path for {what}")
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    if entries and not any((target / m).exists() for m in markers):
        raise MedloraError(
            f"{target} is not empty and does not hold {what} written by medlora ({len(entries)} entries, no "
            f"{' or '.join(markers)}); refusing to replace it. Choose a new directory (e.g. {target}/NAME)"
        )


@contextmanager
def atomic_directory(target: str | Path, *, keep_previous: bool = False) -> Iterator[Path]:
    """Yield a staging directory beside ``target``; on success it replaces ``target`` in one rename.

    On an exception the staging directory is removed and any existing ``target`` is left untouched. The
    previous ``target`` is moved aside first (rename, not copy), then deleted once the new one is in place —
    or, with ``keep_previous``, kept as ``<target>.prev`` (replacing an older ``.prev``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
        if old is not None:
            if keep_previous:
                previous = previous_path(target)
                if previous.exists():
                    shutil.rmtree(previous, ignore_errors=True)
                os.replace(old / target.name, previous)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
