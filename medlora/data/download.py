"""``medlora data download medquad|abstracts``: the real datasets, one command away, verified and atomic.

A fresh clone has no ``../shared/data``; without MedQuAD the offline demo trains on the built-in set alone.
This fetches the datasets from their public sources, pinned to one upstream commit, checks a pinned SHA-256,
and only then moves them into the medlora data directory (``$MEDLORA_DATA_DIR``, else ``<cache>/data``), which
``medquad:auto`` and ``abstracts:auto`` search after ``$MEDQUAD_DIR`` / ``../shared/data``. A failed download
or a checksum mismatch leaves nothing behind, and an existing copy untouched.

Checksums:

- abstracts: the SHA-256 of each CSV file (raw files from the upstream repository);
- MedQuAD: the upstream archive is a GitHub-generated zip whose bytes are not guaranteed stable, so the pin is
  a *content* hash — SHA-256 over the sorted ``"<folder>/<file>.xml<TAB><sha256 of the file>\\n"`` lines of the
  extracted XML files, computed from the upstream git tree at the pinned commit.

``--url`` and ``--sha256`` replace the pinned values (a mirror, or a newer upstream commit).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medlora.data.locations import ABSTRACTS_CSV, ABSTRACTS_FOLDER, MEDQUAD_FOLDER, data_dir
from medlora.data.sources import abstracts as abstracts_source
from medlora.data.sources import medquad as medquad_source
from medlora.errors import MedloraError
from medlora.fsutil import atomic_directory

_CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    url: str
    name: str  # the file name in the dataset folder
    sha256: str | None


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from, how it is checked, and what it may be used for."""

    name: str
    title: str
    folder: str  # under the data directory
    license: str
    attribution: str
    homepage: str
    env_var: str  # the variable that points medlora at an existing copy
    archive: RemoteFile | None = None  # a zip whose top folder is stripped (MedQuAD)
    files: tuple[RemoteFile, ...] = ()  # plain files (the abstracts)


MEDQUAD_COMMIT = "577bd37b96c02d1833b2c9eed2de9f96964e96cb"
ABSTRACTS_COMMIT = "70a2d9106c724729be8b3c4ddb00d1b14ec300c8"
_ABSTRACTS_RAW = f"https://raw.githubusercontent.com/sebischair/Medical-Abstracts-TC-Corpus/{ABSTRACTS_COMMIT}"

DATASETS: dict[str, DatasetSpec] = {
    "medquad": DatasetSpec(
        name="medquad",
        title="MedQuAD",
        folder=MEDQUAD_FOLDER,
        license=medquad_source.LICENSE,
        attribution=medquad_source.ATTRIBUTION,
        homepage="https://github.com/abachaa/MedQuAD",
        env_var="MEDQUAD_DIR",
        archive=RemoteFile(
            url=f"https://github.com/abachaa/MedQuAD/archive/{MEDQUAD_COMMIT}.zip",
            name="MedQuAD.zip",
            sha256="0c998a31f0c13ac9886d6d963a055602c59f663115542a00c6bf2c1b98f3978f",  # content hash, see above
        ),
    ),
    "abstracts": DatasetSpec(
        name="abstracts",
        title="Medical Abstracts (text-classification corpus)",
        folder=ABSTRACTS_FOLDER,
        license=abstracts_source.LICENSE,
        attribution=abstracts_source.ATTRIBUTION,
        homepage="https://github.com/sebischair/Medical-Abstracts-TC-Corpus",
        env_var="MEDICAL_ABSTRACTS_CSV",
        files=(
            RemoteFile(f"{_ABSTRACTS_RAW}/{ABSTRACTS_CSV}", ABSTRACTS_CSV,
                       "1eecea73c9ecad292c55e10403bd139fab9580545d6878482997c5564d51ac05"),
            RemoteFile(f"{_ABSTRACTS_RAW}/medical_tc_labels.csv", "medical_tc_labels.csv",
                       "8a27ae03339c798103678efa8012f744a723ff71a80f2b2c1355ee249564adc5"),
        ),
    ),
}


def content_hash(root: Path) -> str:
    """The MedQuAD content hash of an extracted tree (see the module docstring)."""
    lines = sorted(
        f"{p.relative_to(root).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in root.glob("*/*.xml")
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _offline_message(spec: DatasetSpec, url: str, reason: str) -> str:
    return (f"cannot download {spec.title} from {url} ({reason}). Offline? Point {spec.env_var} at an existing "
            f"copy, or train from a hub: source instead (--source hub:DATASET_ID).")


def _fetch(url: str, dest: Path, spec: DatasetSpec, timeout: float) -> str:
    """Stream ``url`` into ``dest`` and return its SHA-256; any network failure is one clear MedloraError."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:  # noqa: S310
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as err:
        raise MedloraError(_offline_message(spec, url, f"HTTP {err.code}")) from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise MedloraError(_offline_message(spec, url, str(reason))) from None
    return digest.hexdigest()


def _check(what: str, got: str, expected: str | None) -> None:
    if expected is not None and got != expected.lower():
        raise MedloraError(
            f"{what}: SHA-256 mismatch (got {got}, expected {expected}); nothing was written. The upstream may "
            "have changed: check it, then pass --sha256 with the new value.")


def _extract_stripped(archive: Path, target: Path) -> None:
    """Extract a zip, dropping its single top folder (``MedQuAD-<commit>/``); refuse unsafe member paths."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            parts = PurePosixPath(member.filename).parts
            if member.is_dir() or len(parts) < 2:
                continue
            relative = PurePosixPath(*parts[1:])
            if relative.is_absolute() or ".." in relative.parts:
                raise MedloraError(f"{archive.name}: unsafe path in archive: {member.filename}")
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)


def download_dataset(
    name: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    directory: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Download, verify and atomically install dataset ``name``; returns the installed folder.

    ``url`` and ``sha256`` replace the pinned values (for a dataset with several files, ``url`` is the base
    the file names are appended to, and ``sha256`` is not accepted).
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise MedloraError(f"unknown dataset '{name}': use one of {', '.join(DATASETS)}")
    say = progress or (lambda _message: None)
    target = (directory or data_dir()) / spec.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.folder}.download-", dir=target.parent) as tmp:
        tmp_dir = Path(tmp)
        with atomic_directory(target) as staging:
            if spec.archive is not None:
                source = url or spec.archive.url
                say(f"Downloading {spec.title} from {source}")
                archive = tmp_dir / spec.archive.name
                _fetch(source, archive, spec, timeout)
                try:
                    _extract_stripped(archive, staging)
                except zipfile.BadZipFile:
                    raise MedloraError(f"{source}: not a zip archive; nothing was written") from None
                _check(f"{spec.title} (content of {source})", content_hash(staging), sha256 or spec.archive.sha256)
            else:
                if sha256 is not None and len(spec.files) > 1:
                    raise MedloraError(f"{spec.title} has {len(spec.files)} files, each with its own pinned "
                                       "checksum; --sha256 applies to single-file datasets only")
                for remote in spec.files:
                    source = f"{url.rstrip('/')}/{remote.name}" if url else remote.url
                    say(f"Downloading {remote.name} from {source}")
                    got = _fetch(source, staging / remote.name, spec, timeout)
                    _check(f"{remote.name} ({source})", got, sha256 or remote.sha256)
    return target
