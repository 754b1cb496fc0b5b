"""keras_resnet_cifar.deploy.predictor: what it refuses to load, and how it says so.

Every tool that reads a model (evaluate, predict, export, benchmark) loads it
through the predictor, so its refusals are tested here once.
"""

from __future__ import annotations

import zipfile

import pytest

from keras_resnet_cifar.deploy import predictor
from keras_resnet_cifar.errors import UserError


def test_bad_model_paths_are_one_sentence_each(tmp_path):
    with pytest.raises(UserError, match="No run directory, .keras file, SavedModel"):
        predictor.load(tmp_path / "nope")
    with pytest.raises(UserError, match="has no model.keras and no saved_model.pb"):
        predictor.load(tmp_path)
    (tmp_path / "w.h5").write_text("x")
    with pytest.raises(UserError, match="is not a model: expected a run directory"):
        predictor.load(tmp_path / "w.h5")
    (tmp_path / "junk.keras").write_text("x")
    with pytest.raises(UserError, match="exists but is not a .keras model"):
        predictor.load(tmp_path / "junk.keras")
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a loadable TFLite model"):
        predictor.load(tmp_path / "junk.tflite")
    with pytest.raises(UserError, match="Unknown --checkpoint"):
        predictor.load(tmp_path, checkpoint="middle")
    with pytest.raises(UserError, match="Unknown --checkpoint"):
        predictor.resolve(tmp_path, "middle")


def test_a_keras_zip_bomb_is_refused_from_its_directory(tmp_path):
    # Issue 16, item 5: a small .keras whose config.json inflates to gigabytes.
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", "{}")
        with z.open("config.json", "w", force_zip64=True) as f:
            for _ in range(20):
                f.write(b" " * (1 << 20))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UserError, match=r"config.json announces 20,971,520 bytes "
                                        r"uncompressed, more than 16,777,216"):
        predictor.load(bomb)
