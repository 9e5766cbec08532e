import pytest

from medlora.fsutil import atomic_directory


def test_success_replaces_target_in_one_step(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").is_file()  # the old one stays readable until the swap
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_crash_leaves_previous_target_and_no_debris(tmp_path):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "adapter_model.safetensors").write_text("good weights")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "adapter_model.safetensors").write_text("half")
        raise RuntimeError("power cut")
    assert (target / "adapter_model.safetensors").read_text() == "good weights"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
