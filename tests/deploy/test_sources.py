"""keras_resnet_cifar.deploy.sources: what an export is made from (exports of each kind of
source: tests/test_export.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keras_resnet_cifar.deploy import predictor, sources
from keras_resnet_cifar.errors import UserError


def _saved_model_source(path, card):
    resolved = predictor.Resolved(path, path, "saved_model")
    return sources.Source(predictor.Predictor(resolved, None, "ab", card=card), {})


def test_default_name_of_a_saved_model_source():
    path = Path("exports/resnet20/3")
    assert sources.default_name(_saved_model_source(path, {"name": "resnet20-b"})) == \
        "resnet20-b"
    # A card's name is any JSON: one that is not one path segment is not used.
    for card in (None, {"name": "../x"}, {"name": "\x1b[2J"}, {"name": 7}):
        assert sources.default_name(_saved_model_source(path, card)) == "resnet20"


def test_a_tflite_file_is_not_a_source(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"")
    with pytest.raises(UserError, match="already an export"):
        sources.load_source(tmp_path / "m.tflite")


def test_synthetic_eval_data_says_so():
    data = sources.eval_data("synthetic", None, calibration_images=30)
    assert data.calibration.shape == (30, 32, 32, 3) and not data.real
    assert len(data.test_images) == len(data.test_labels) == 1000
    assert data.description.startswith("synthetic: synthetic data set")
