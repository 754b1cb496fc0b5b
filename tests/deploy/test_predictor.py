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


# --- Issue 29: outputs checked before they are shown or scored -----------------------------

def _fake(outputs, names=tuple("abcdefghij")):
    import numpy as np

    resolved = predictor.Resolved(__import__("pathlib").Path("m.keras"),
                                  __import__("pathlib").Path("m.keras"), "keras")
    return predictor.Predictor(resolved, lambda x: np.asarray(outputs(len(x)), np.float32),
                               names)


def test_outputs_that_are_not_probabilities_are_one_line_each():
    # Issue 29: NaN weights had their NaN probabilities printed by predict and scored by
    # evaluate; a model ending in logits was printed as "airplane 1903164.1%".
    import numpy as np

    pixels = np.zeros((3, 32, 32, 3), np.uint8)
    good = _fake(lambda n: np.full((n, 10), 0.1))
    assert good.predict(pixels).shape == (3, 10)
    for outputs, message in (
            (lambda n: np.full((n, 10), np.nan), r"m.keras gave non-finite outputs \(NaN or "
                                                 r"infinity\) for 3 of 3 image\(s\)"),
            (lambda n: np.full((n, 10), 19031.641), "gave outputs that are not probabilities"),
            (lambda n: np.full((n, 10), 0.5), "rows summing to 5 to 5"),
            (lambda n: np.full((n, 5), 0.2), r"shape \(3, 5\) for 3 image\(s\), not \(3, 10\)"),
            (lambda n: np.full((n, 2, 5), 0.1), r"shape \(3, 2, 5\)")):
        with pytest.raises(UserError, match=message):
            _fake(outputs).predict(pixels)
        with pytest.raises(UserError, match=message):
            predictor.score(_fake(outputs), pixels, np.zeros(3, np.int64))
    with pytest.raises(UserError, match=r"shape \(3, 10\) for 3 image\(s\), not \(3, 2\)"):
        _fake(lambda n: np.full((n, 10), 0.1), names=("x", "y")).predict(pixels)


def test_a_real_model_with_nan_weights_is_refused(tmp_path):
    import numpy as np

    from keras_resnet_cifar.models import networks

    model = networks.build_model("resnet8")
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    model.save(tmp_path / "nan.keras")
    with pytest.raises(UserError, match="nan.keras gave non-finite outputs"):
        predictor.load(tmp_path / "nan.keras").predict(np.zeros((2, 32, 32, 3), np.uint8))


def test_class_names_from_files_are_printed_with_control_characters_escaped():
    from keras_resnet_cifar.data import labels

    line = labels.format_ranked([{"input": "a\x1b[2J.png", "top": [
        {"class": "\x1b[31mcat\x07", "probability": 0.5}]}])
    assert "\x1b" not in line and "\x07" not in line
    assert line == "a\\x1b[2J.png  \\x1b[31mcat\\x07  50.0%"
