"""Image loading, the predictor interface and the predict CLI on good and hostile inputs."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar.data import datasets, images
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


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG file that declares a huge image (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_hostile_images_are_refused_per_file(tmp_path, pixels):
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(images.ImageError, match="more than the 25,000,000 pixels"):
        images.load_file(tmp_path / "bomb.png")  # Pillow's own bomb check, at open
    _png_header_only(tmp_path / "wide.png", images.MAX_PIXELS + 1, 1)
    with pytest.raises(images.ImageError, match="25000001x1 pixels, more than"):
        images.load_file(tmp_path / "wide.png")  # below Pillow's limit, above ours
    np.save(tmp_path / "unit.npy", pixels[:2].astype(np.float32) / 255)
    with pytest.raises(images.ImageError, match="multiply by 255"):
        images.load_file(tmp_path / "unit.npy")
    # Floats on the 0-255 scale are pixels; an all-black float image is too.
    np.save(tmp_path / "scaled.npy", pixels[:2].astype(np.float32))
    np.testing.assert_array_equal(images.load_file(tmp_path / "scaled.npy").pixels, pixels[:2])
    np.save(tmp_path / "black.npy", np.zeros((32, 32, 3), np.float32))
    assert images.load_file(tmp_path / "black.npy").pixels.max() == 0
    Image.fromarray(pixels[0]).save(tmp_path / "a.png")
    loaded, errors = images.load_files([tmp_path / "bomb.png", tmp_path / "a.png",
                                        tmp_path / "unit.npy"])
    assert [item.path for item in loaded] == [str(tmp_path / "a.png")]
    assert len(errors) == 2


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
    with pytest.raises(UserError, match="has no model.keras .*--checkpoint=last"):
        predictor.resolve(tmp_path)
    with pytest.raises(UserError, match="applies to run directories"):
        predictor.resolve(folder / "model.tflite", "best")


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path, pixels):
    # Issue 16, item 8: Pillow's convert("RGB") clipped 99.4% of the pixels at 255.
    gray = np.asarray(Image.fromarray(pixels[0]).convert("L"), np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "g16.png")  # the same image, 16 bits
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = images.load_file(tmp_path / "g16.png")
    for c in range(3):
        np.testing.assert_array_equal(loaded.pixels[0, :, :, c], gray)
    assert "converted 16-bit grayscale" in loaded.warnings[0]


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
def test_cli_scores_good_files_and_reports_bad_ones(models_dir, files):
    folder, _ = models_dir
    _png_header_only(files / "bomb.png", 20000, 20000)
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
def test_cli_on_saved_model_and_dataset(models_dir, files):
    folder, _ = models_dir
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
    assert negative.stderr.splitlines() == ["error: --max_images must be >= 0, got -1."]
