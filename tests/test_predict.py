"""Image loading, the predictor interface and the predict CLI on good and hostile inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.deploy import predictor, tflite
from keras_resnet_cifar.models import networks
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def pixels():
    return datasets.synthetic(0, 8, seed=3).test.images


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with a float32 .tflite and a SavedModel (same weights), and the model."""
    from keras_resnet_cifar.deploy import serving

    folder = tmp_path_factory.mktemp("models")
    model = networks.build_model("resnet8")
    (folder / "model.tflite").write_bytes(tflite.convert(model, "float32"))
    serving.save(model, folder / "saved", CIFAR10_CLASSES)
    model.save(folder / "model.keras")
    return folder, model


def test_every_kind_of_model_gives_the_same_answers(models_dir, pixels):
    folder, model = models_dir
    expected = model.predict(pixels.astype(np.float32), verbose=0)
    for path, kind in ((folder / "model.tflite", "tflite"), (folder / "saved", "saved_model"),
                       (folder / "model.keras", "keras")):
        loaded_model = predictor.load(path, trust_savedmodel=True)  # written by the fixture
        assert loaded_model.kind == kind and loaded_model.describe()["kind"] == kind
        seen = []
        probabilities = loaded_model.predict(pixels, batch_size=3,
                                             progress=lambda d, t: seen.append((d, t)))
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert seen == [(3, 8), (6, 8), (8, 8)]
        result = predictor.classify(loaded_model, pixels, [f"x[{i}]" for i in range(8)], k=2)
        assert [r["top"][0]["class"] for r in result] == [
            CIFAR10_CLASSES[i] for i in expected.argmax(1)]
        assert result[0]["top"][0]["probability"] == pytest.approx(expected[0].max(), abs=1e-5)


def test_score_counts_right_and_wrong_answers(models_dir, pixels):
    folder, model = models_dir
    predicted = model.predict(pixels.astype(np.float32), verbose=0).argmax(1)
    labels = predicted.copy()
    labels[[1, 4, 6]] = (labels[[1, 4, 6]] + 1) % 10  # three wrong labels of eight
    scored = predictor.score(predictor.load(folder / "model.tflite"), pixels, labels)
    assert scored == {"images": 8, "correct": 5, "accuracy": 5 / 8}


def test_checkpoints_of_a_run_directory(models_dir, tmp_path):
    folder, _ = models_dir
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.keras").write_bytes((folder / "model.keras").read_bytes())
    best = predictor.resolve(tmp_path, "best")
    assert (best.kind, best.run_dir, best.file) == ("keras", tmp_path,
                                                    tmp_path / "checkpoints" / "best.keras")
    with pytest.raises(UserError, match="has no model.keras .*checkpoint=last") as e:
        predictor.resolve(tmp_path)
    assert e.value.argument == "checkpoint"
    with pytest.raises(UserError, match="applies to run directories"):
        predictor.resolve(folder / "model.tflite", "best")


def test_a_damaged_checkpoint_is_named_as_damaged(models_dir, tmp_path):
    # Issue 16, item 2: Keras says "File not found" for a truncated .keras file.
    folder, _ = models_dir
    (tmp_path / "checkpoints").mkdir()
    good = (folder / "model.keras").read_bytes()
    (tmp_path / "checkpoints" / "best.keras").write_bytes(good[:len(good) // 2])
    with pytest.raises(UserError, match=r"checkpoints/best.keras exists but is not a readable "
                                        r"\.keras model \(truncated or corrupt"):
        predictor.load(tmp_path, checkpoint="best")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "keras_resnet_cifar.predict", *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True)


@pytest.mark.slow
def test_cli_scores_good_files_and_reports_bad_ones(models_dir, image_files, png_header_only):
    folder, _ = models_dir
    files = image_files
    png_header_only(files / "bomb.png", 20000, 20000)
    done = _cli(f"--model_path={folder / 'model.tflite'}", "--json", "a.png", "b.jpg",
                "batch.npy", "corrupt.png", "big.png", "missing.png", "bomb.png", cwd=files)
    assert done.returncode == 1  # some failed
    out = json.loads(done.stdout)
    assert [p["input"] for p in out["predictions"]] == [
        "a.png", "b.jpg", "batch.npy[0]", "batch.npy[1]", "batch.npy[2]", "big.png"]
    assert len(out["predictions"][0]["top"]) == 3
    errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 3 and "corrupt.png" in errors[0] and "missing.png" in errors[1]
    assert "bomb.png: declares more than" in errors[2]
    assert "warning: big.png: resized" in done.stderr and "Traceback" not in done.stderr
    # --strict turns the resize into an error; the table format.
    strict = _cli(f"--model_path={folder / 'model.tflite'}", "--strict", "a.png", "big.png",
                  cwd=files)
    assert strict.returncode == 1 and "--strict" in strict.stderr
    assert strict.stdout.startswith("a.png") and "%" in strict.stdout


@pytest.mark.slow
def test_cli_on_saved_model_and_dataset(models_dir, image_files):
    folder, _ = models_dir
    files = image_files
    done = _cli(f"--model_path={folder / 'saved'}", "--trust_savedmodel", "a.png", "b.jpg",
                cwd=files)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("a.png") and "\nb.jpg" in done.stdout
    scored = _cli(f"--model_path={folder / 'model.tflite'}", "--dataset=synthetic",
                  "--max_images=500", "--json", cwd=files)
    assert scored.returncode == 0, scored.stderr[-2000:]
    score = json.loads(scored.stdout)["score"]
    # The same images scored here: datasets.synthetic is deterministic.
    test = datasets.load("synthetic", None, synthetic_sizes=(0, 10000)).test
    expected = predictor.score(predictor.load(folder / "model.tflite"), test.images[:500],
                               test.labels[:500])
    assert score == {"dataset": "synthetic", "split": "test", **expected}
    assert "scoring synthetic test images: 500/500 images (100%)" in scored.stderr
    bad = _cli(f"--model_path={files / 'notes.txt'}", "a.png", cwd=files)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: {files / 'notes.txt'} is not a model: expected a run directory, a .keras "
        "file, a SavedModel folder or a .tflite file.")
    negative = _cli(f"--model_path={folder / 'model.tflite'}", "a.png", "--max_images=-1",
                    cwd=files)
    [line] = negative.stderr.splitlines()
    assert line.startswith("error: ") and "--max_images=-1" in line and "non-negative" in line
