"""``medlora data download``: local file:// URLs stand in for the public sources (no network in tests)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from helpers import SHARED_DATA
from typer.testing import CliRunner

from medlora.cli import app
from medlora.data import download as dl
from medlora.data.sources.abstracts import default_abstracts_csv
from medlora.data.sources.medquad import default_medquad_dir
from medlora.errors import MedloraError

XML = '<?xml version="1.0"?><Document id="{i}"><Focus>Psoriasis {i}</Focus><QAPairs><QAPair pid="1">' \
      '<Question qtype="treatment">How is it treated?</Question><Answer>Topical steroids.</Answer>' \
      '</QAPair></QAPairs></Document>'


def _medquad_zip(tmp_path: Path, n: int = 3) -> tuple[Path, str]:
    """A zip in the upstream layout (one top folder) and the content hash of what it holds."""
    tree = tmp_path / "tree"
    for i in range(n):
        path = tree / "3_GHR_QA" / f"{i:07d}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(XML.format(i=i), encoding="utf-8")
    archive = tmp_path / "MedQuAD-abc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(tree.rglob("*.xml")):
            zf.write(file, f"MedQuAD-abc/{file.relative_to(tree).as_posix()}")
        zf.writestr("MedQuAD-abc/LICENSE.txt", "CC BY 4.0")
    return archive, dl.content_hash(tree)


def test_medquad_download_verifies_and_installs_atomically(tmp_path):
    archive, digest = _medquad_zip(tmp_path)
    target = dl.download_dataset("medquad", url=archive.as_uri(), sha256=digest, directory=tmp_path / "data")
    assert target == tmp_path / "data" / "medquad"
    assert sorted(p.name for p in (target / "3_GHR_QA").iterdir()) == ["0000000.xml", "0000001.xml", "0000002.xml"]
    assert (target / "LICENSE.txt").is_file()
    assert dl.content_hash(target) == digest
    assert [p.name for p in target.parent.iterdir()] == ["medquad"]  # no staging or download leftovers


def test_checksum_mismatch_writes_nothing_and_keeps_the_old_copy(tmp_path):
    archive, digest = _medquad_zip(tmp_path)
    data = tmp_path / "data"
    dl.download_dataset("medquad", url=archive.as_uri(), sha256=digest, directory=data)
    before = dl.content_hash(data / "medquad")
    other, _ = _medquad_zip(tmp_path / "other", n=5)
    with pytest.raises(MedloraError, match="SHA-256 mismatch.*nothing was written.*--sha256"):
        dl.download_dataset("medquad", url=other.as_uri(), sha256=digest, directory=data)
    assert dl.content_hash(data / "medquad") == before
    assert [p.name for p in data.iterdir()] == ["medquad"]


def test_pinned_checksum_is_used_when_none_is_given(tmp_path):
    archive, _ = _medquad_zip(tmp_path)  # not the real MedQuAD: the pinned content hash must reject it
    with pytest.raises(MedloraError, match=dl.DATASETS["medquad"].archive.sha256):
        dl.download_dataset("medquad", url=archive.as_uri(), directory=tmp_path / "data")
    assert not (tmp_path / "data" / "medquad").exists()


def test_offline_failure_is_one_clear_line_naming_the_env_var_and_hub(tmp_path):
    missing = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(MedloraError) as err:
        dl.download_dataset("medquad", url=missing, directory=tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message and "MEDQUAD_DIR" in message and "hub:" in message
    assert not (tmp_path / "data" / "medquad").exists()


def test_unsafe_archive_paths_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/../../escape.xml", "<x/>")
    with pytest.raises(MedloraError, match="unsafe path"):
        dl.download_dataset("medquad", url=archive.as_uri(), sha256="0" * 64, directory=tmp_path / "data")
    assert not (tmp_path / "escape.xml").exists()


def test_unknown_dataset_and_multi_file_checksum_are_rejected(tmp_path):
    with pytest.raises(MedloraError, match="unknown dataset 'pubmed'"):
        dl.download_dataset("pubmed", directory=tmp_path)
    with pytest.raises(MedloraError, match="--sha256 applies to single-file datasets"):
        dl.download_dataset("abstracts", url=tmp_path.as_uri(), sha256="0" * 64, directory=tmp_path / "d")


@pytest.mark.skipif(not (SHARED_DATA / "medical_abstracts" / "medical_tc_test.csv").is_file(),
                    reason="the shared abstracts CSVs are not here")
def test_abstracts_download_matches_the_pinned_upstream_checksums(tmp_path):
    # The shared copy is byte-identical to the upstream files at the pinned commit, so the pinned checksums
    # verify it; served from a file:// URL in place of raw.githubusercontent.com.
    source = SHARED_DATA / "medical_abstracts"
    for remote in dl.DATASETS["abstracts"].files:
        assert hashlib.sha256((source / remote.name).read_bytes()).hexdigest() == remote.sha256
    target = dl.download_dataset("abstracts", url=source.as_uri(), directory=tmp_path / "data")
    assert sorted(p.name for p in target.iterdir()) == ["medical_tc_labels.csv", "medical_tc_test.csv"]


def test_abstracts_with_a_wrong_file_install_nothing(tmp_path):
    fake = tmp_path / "mirror"
    fake.mkdir()
    for remote in dl.DATASETS["abstracts"].files:
        (fake / remote.name).write_text("label,text\n1,not the corpus\n", encoding="utf-8")
    with pytest.raises(MedloraError, match="medical_tc_test.csv.*SHA-256 mismatch"):
        dl.download_dataset("abstracts", url=fake.as_uri(), directory=tmp_path / "data")
    assert not (tmp_path / "data" / "medical_abstracts").exists()


def test_auto_sources_find_the_downloaded_copy(tmp_path, monkeypatch):
    archive, digest = _medquad_zip(tmp_path)
    monkeypatch.setenv("MEDLORA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MEDQUAD_DIR", raising=False)
    monkeypatch.delenv("MEDICAL_ABSTRACTS_CSV", raising=False)
    repo = tmp_path / "clone" / "medlora"  # a fresh clone: no ../shared beside it
    repo.mkdir(parents=True)
    assert default_medquad_dir(repo) is None and default_abstracts_csv(repo) is None
    dl.download_dataset("medquad", url=archive.as_uri(), sha256=digest)
    assert default_medquad_dir(repo) == tmp_path / "data" / "medquad"


def test_cli_download_prints_license_and_attribution(tmp_path):
    archive, digest = _medquad_zip(tmp_path)
    result = CliRunner().invoke(app, ["data", "download", "medquad", "--url", archive.as_uri(), "--sha256", digest,
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "checksum verified" in flat and "CC BY 4.0" in flat and "Ben Abacha" in flat
    offline = CliRunner().invoke(app, ["data", "download", "medquad", "--url", (tmp_path / "no.zip").as_uri(),
                                       "--data-dir", str(tmp_path / "data2")])
    assert offline.exit_code == 2 and "MEDQUAD_DIR" in " ".join(offline.output.split())


def test_prepare_without_medquad_says_how_to_get_it(tmp_path, monkeypatch):
    from medlora.config import load_config
    from medlora.data.prepare import prepare_dataset

    monkeypatch.setenv("MEDLORA_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("MEDQUAD_DIR", raising=False)
    repo = tmp_path / "clone" / "medlora"
    repo.mkdir(parents=True)
    cfg = load_config().with_overrides({"data.sources": ["builtin", "medquad:auto"]})
    report = prepare_dataset(cfg.data, repo_root=repo, output_dir=tmp_path / "out")
    note = {s.spec: s.note for s in report.sources}["medquad:auto"]
    assert "medlora data download medquad" in note and "MEDQUAD_DIR" in note
