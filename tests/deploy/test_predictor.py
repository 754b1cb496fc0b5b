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
    for call in (lambda: predictor.load(tmp_path, checkpoint="middle"),
                 lambda: predictor.resolve(tmp_path, "middle")):
        with pytest.raises(UserError, match="'middle'") as bad:
            call()
        assert bad.value.argument == "checkpoint"
    with pytest.raises(UserError, match="checkpoint=best applies to run directories") as bad:
        predictor.resolve(tmp_path / "junk.tflite", "best")
    assert bad.value.argument == "checkpoint"


def test_a_keras_zip_bomb_is_refused_from_its_directory(tmp_path):
    # Issue 16, item 5: a small .keras whose config.json inflates to gigabytes.
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", "{}")
        with z.open("config.json", "w", force_zip64=True) as f:
            for _ in range(20):
                f.write(b" " * (1 << 20))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UserError, match=r"config.json announces uncompressed 20,971,520 "
                                        r"bytes, more than the 16,777,216"):
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


# --- Issue 29: .keras weights that declare gigabytes; models that are not CIFAR-10's ------

def _with_bombed_weights(good, bomb, rows):
    """``good`` with its first 4-d weight declared (``rows``, ...) and never written: an
    HDF5 dataset of gigabytes (a fill value) in a file of kilobytes."""
    import io

    import h5py

    with zipfile.ZipFile(good) as src:
        members = {n: src.read(n) for n in src.namelist()}
    out, bombed = io.BytesIO(), []
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as f, \
            h5py.File(out, "w") as g:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                g.require_group(name)
            elif obj.ndim == 4 and not bombed:
                g.create_dataset(name, shape=(rows, *obj.shape[1:]), dtype="f4",
                                 chunks=(1, *obj.shape[1:]), fillvalue=0.5)
                bombed.append(name)
            else:
                g.create_dataset(name, data=obj[()])
        f.visititems(copy)
    members["model.weights.h5"] = out.getvalue()
    with zipfile.ZipFile(bomb, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return bomb


def test_keras_weights_that_declare_more_than_they_store_are_refused(tmp_path):
    # Issue 29: a .keras whose HDF5 filled 4 GB. Keras (3.15) refuses a dataset only
    # beyond 4 GiB; below it, 576 MB declared in 0 stored took 6 GB and 60 s here.
    import resource

    from keras_resnet_cifar.models import networks

    networks.build_model("resnet8").save(tmp_path / "good.keras")
    bomb = _with_bombed_weights(tmp_path / "good.keras", tmp_path / "bomb.keras", 1_000_000)
    assert bomb.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match=r"bomb.keras: its weight layers/conv2d/vars/0 "
                                        r"declares 576,000,000 bytes and stores 0: a bomb"):
        predictor.load(bomb)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 << 10  # the refusal read the HDF5 directory only
    inflating = tmp_path / "inflating.keras"
    with zipfile.ZipFile(tmp_path / "good.keras") as src, \
            zipfile.ZipFile(inflating, "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
        z.writestr("padding.bin", b"\0" * (8 << 20))
    with pytest.raises(UserError, match=r"its padding.bin inflates [0-9,]+ bytes to "
                                        r"8,388,608: a zip bomb"):
        predictor.load(inflating)
    predictor.load(tmp_path / "good.keras")  # a genuine model passes both checks


def test_models_that_are_not_cifar10_classifiers_are_one_line(tmp_path):
    # Issue 29: 64x64 or grayscale input, two outputs: tracebacks in predict, evaluate,
    # export and benchmark (all load through the predictor); five classes were printed
    # as classes "0".."4" and scored against CIFAR-10's labels.
    import keras

    def save(name, shape, outputs):
        x = keras.Input(shape)
        flat = keras.layers.Flatten()(x)
        y = [keras.layers.Dense(k, activation="softmax")(flat) for k in outputs]
        keras.Model(x, y if len(y) > 1 else y[0]).save(tmp_path / f"{name}.keras")
        return tmp_path / f"{name}.keras"

    for name, shape, outputs, got in (
            ("in64", (64, 64, 3), [10], r"\(None, 64, 64, 3\) to \(None, 10\)"),
            ("gray", (32, 32, 1), [10], r"\(None, 32, 32, 1\) to \(None, 10\)"),
            ("two", (32, 32, 3), [10, 10],
             r"\(None, 32, 32, 3\) to \[\(None, 10\), \(None, 10\)\]"),
            ("five", (32, 32, 3), [5], r"\(None, 32, 32, 3\) to \(None, 5\)")):
        with pytest.raises(UserError, match=rf"{name}.keras maps {got}: not a classifier of "
                                            r"32x32 RGB images into CIFAR-10's 10 classes"):
            predictor.load(save(name, shape, outputs))
    done = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "keras_resnet_cifar.export",
         f"--model_path={tmp_path / 'in64.keras'}", f"--out={tmp_path / 'exports'}"],
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'in64.keras'} maps (None, 64, 64, 3) to (None, 10): not a "
        "classifier of 32x32 RGB images into CIFAR-10's 10 classes ((None, 32, 32, 3) to "
        "(None, 10))."]
    assert not (tmp_path / "exports").exists()
