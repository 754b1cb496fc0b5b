"""Image loading and the predict CLI on PNG/JPEG/.npy/corrupt inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar import datasets, images, models, predict, tflite
from keras_resnet_cifar.errors import UserError

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def pixels():
    return datasets.synthetic(0, 8, seed=3).test.images


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with a float32 .tflite and a SavedModel (same weights), and the model."""
    from keras_resnet_cifar import serving

    folder = tmp_path_factory.mktemp("models")
    model = models.build_model("resnet8")
    (folder / "model.tflite").write_bytes(tflite.convert(model, "float32"))
    serving.save(model, folder / "saved", models.CIFAR10_CLASSES)
    return folder, model


@pytest.fixture()
def files(tmp_path, pixels):
    """Inputs of every kind in tmp_path: PNG, JPEG, npy batch, gray, RGBA, big, corrupt."""
    Image.fromarray(pixels[0]).save(tmp_path / "a.png")
    Image.fromarray(pixels[1]).save(tmp_path / "b.jpg", quality=95)
    np.save(tmp_path / "batch.npy", pixels[2:5])
    Image.fromarray(pixels[5]).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(pixels[6]).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(pixels[7]).resize((64, 48)).save(tmp_path / "big.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_load_file_kinds(files, pixels):
    a = images.load_file(files / "a.png")
    assert a.pixels.shape == (1, 32, 32, 3) and a.pixels.dtype == np.uint8
    np.testing.assert_array_equal(a.pixels[0], pixels[0])
    assert a.names == (str(files / "a.png"),) and a.warnings == ()
    with Image.open(files / "b.jpg") as jpeg:  # lossy: compare with Pillow's decoding
        np.testing.assert_array_equal(images.load_file(files / "b.jpg").pixels[0],
                                      np.asarray(jpeg.convert("RGB")))
    batch = images.load_file(files / "batch.npy")
    np.testing.assert_array_equal(batch.pixels, pixels[2:5])
    assert batch.names[1] == f"{files / 'batch.npy'}[1]"
    gray = images.load_file(files / "gray.png")
    assert gray.pixels.shape == (1, 32, 32, 3) and "converted L to RGB" in gray.warnings[0]
    rgba = images.load_file(files / "rgba.png")
    np.testing.assert_array_equal(rgba.pixels[0], pixels[6])
    big = images.load_file(files / "big.png")
    assert big.pixels.shape == (1, 32, 32, 3) and "resized 64x48 to 32x32" in big.warnings[0]
    with pytest.raises(images.ImageError, match="--strict"):
        images.load_file(files / "big.png", strict=True)


def test_load_file_errors(files, tmp_path):
    for name, message in (("corrupt.png", "not a readable image"),
                          ("notes.txt", "not a readable image"),
                          ("missing.png", "no such file")):
        with pytest.raises(images.ImageError, match=message):
            images.load_file(files / name)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(images.ImageError, match="not \\(N,\\) 32x32"):
        images.load_file(tmp_path / "wrong.npy")
    np.save(tmp_path / "range.npy", np.full((32, 32, 3), 300.0))
    with pytest.raises(images.ImageError, match="not pixels"):
        images.load_file(tmp_path / "range.npy")
    np.save(tmp_path / "single.npy", np.zeros((32, 32, 3), np.float32))
    assert images.load_file(tmp_path / "single.npy").names == (str(tmp_path / "single.npy"),)


def test_classify_and_score(models_dir, pixels):
    folder, model = models_dir
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    for path in (folder / "model.tflite", folder / "saved"):
        classifier = predict.load_classifier(path)
        loaded = [images.Loaded("x.npy", tuple(f"x[{i}]" for i in range(8)), pixels)]
        result = predict.classify(classifier, loaded, k=2)
        assert [r["top"][0]["class"] for r in result] == [
            models.CIFAR10_CLASSES[i] for i in expected.argmax(1)]
        assert result[0]["top"][0]["probability"] == pytest.approx(expected[0].max(), abs=1e-5)
        labels = expected.argmax(1)
        assert predict.score(classifier, pixels, labels)["accuracy"] == 1.0


def test_bad_model_paths(tmp_path):
    with pytest.raises(UserError, match="No model at"):
        predict.load_classifier(tmp_path / "nope")
    with pytest.raises(UserError, match="neither a SavedModel"):
        predict.load_classifier(tmp_path)
    (tmp_path / "w.h5").write_text("x")
    with pytest.raises(UserError, match="neither a SavedModel"):
        predict.load_classifier(tmp_path / "w.h5")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict", *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_scores_good_files_and_reports_bad_ones(models_dir, files):
    folder, _ = models_dir
    done = _cli(f"--model={folder / 'model.tflite'}", "--json", "a.png", "b.jpg",
                "batch.npy", "corrupt.png", "big.png", "missing.png", cwd=files)
    assert done.returncode == 1  # some failed
    out = json.loads(done.stdout)
    assert [p["input"] for p in out["predictions"]] == [
        "a.png", "b.jpg", "batch.npy[0]", "batch.npy[1]", "batch.npy[2]", "big.png"]
    assert len(out["predictions"][0]["top"]) == 3
    errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 2 and "corrupt.png" in errors[0] and "missing.png" in errors[1]
    assert "warning: big.png: resized" in done.stderr and "Traceback" not in done.stderr
    # --strict turns the resize into an error; the table format.
    strict = _cli(f"--model={folder / 'model.tflite'}", "--strict", "a.png", "big.png",
                  cwd=files)
    assert strict.returncode == 1 and "--strict" in strict.stderr
    assert strict.stdout.startswith("a.png") and "%" in strict.stdout


@pytest.mark.slow
def test_cli_on_saved_model_and_dataset(models_dir, files):
    folder, _ = models_dir
    done = _cli(f"--model={folder / 'saved'}", "a.png", "b.jpg", cwd=files)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("a.png") and "\nb.jpg" in done.stdout
    scored = _cli(f"--model={folder / 'model.tflite'}", "--dataset=synthetic",
                  "--max_images=500", "--json", cwd=files)
    assert scored.returncode == 0, scored.stderr[-2000:]
    score = json.loads(scored.stdout)["score"]
    assert score["images"] == 500 and 0 <= score["accuracy"] <= 1
    bad = _cli(f"--model={files / 'notes.txt'}", "a.png", cwd=files)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "neither a SavedModel" in bad.stderr and "Traceback" not in bad.stderr
