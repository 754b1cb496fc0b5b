"""Reading user images (data/images.py): PNG, JPEG and .npy batches, their conversions and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_resnet_cifar.data import images


@pytest.fixture()
def pixels(image_pixels):
    return image_pixels


def test_load_file_kinds(image_files, pixels):
    files = image_files
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
    with pytest.raises(images.ImageError, match="64x48") as e:
        images.load_file(files / "big.png", strict=True)
    assert e.value.argument == "strict"


def test_load_file_errors(image_files, tmp_path):
    files = image_files
    for name, message in (("corrupt.png", "not a readable image"),
                          ("notes.txt", "not a readable image"),
                          ("missing.png", "no such file")):
        with pytest.raises(images.ImageError, match=message):
            images.load_file(files / name)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(images.ImageError, match=r"\(2, 28, 28, 3\)"):
        images.load_file(tmp_path / "wrong.npy")
    np.save(tmp_path / "range.npy", np.full((32, 32, 3), 300.0))
    with pytest.raises(images.ImageError, match=r"\[300, 300\]"):
        images.load_file(tmp_path / "range.npy")
    np.save(tmp_path / "single.npy", np.zeros((32, 32, 3), np.float32))
    assert images.load_file(tmp_path / "single.npy").names == (str(tmp_path / "single.npy"),)

def test_hostile_images_are_refused_per_file(tmp_path, pixels, png_header_only):
    png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(images.ImageError, match="25,000,000"):
        images.load_file(tmp_path / "bomb.png")  # Pillow's own bomb check, at open
    png_header_only(tmp_path / "wide.png", images.MAX_PIXELS + 1, 1)
    with pytest.raises(images.ImageError, match="25000001x1"):
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
    assert loaded.names == (str(tmp_path / "a.png"),) and len(loaded.pixels) == 1
    assert len(errors) == 2

def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path, pixels):
    # Issue 16, item 8: Pillow's convert("RGB") clipped 99.4% of the pixels at 255.
    gray = np.asarray(Image.fromarray(pixels[0]).convert("L"), np.uint16)
    Image.fromarray(gray * 257).save(tmp_path / "g16.png")  # the same image, 16 bits
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = images.load_file(tmp_path / "g16.png")
    for c in range(3):
        np.testing.assert_array_equal(loaded.pixels[0, :, :, c], gray)
    assert "converted 16-bit grayscale" in loaded.warnings[0]


@pytest.mark.parametrize("shape", ["(-1, 32, 32, 3)", "(2, -32, 32, 3)"])
def test_npy_headers_with_negative_shapes_are_one_line(tmp_path, shape):
    # Issue 29: a negative shape in a .npy header was an OverflowError from mmap.
    header = {"descr": "|u1", "fortran_order": False, "shape": (2, 32, 32, 3)}
    path = tmp_path / "negative.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"(2, 32, 32, 3)", shape.encode()).replace(
        b" " * len(shape) + b"\n", b" " * 14 + b"\n"))
    with pytest.raises(images.ImageError, match="negative.npy: not a readable .npy array"):
        images.load_file(path)
