"""Images for inference (PNG/JPEG files, .npy batches) as uint8 RGB (N, 32, 32, 3). numpy
and Pillow only (an edge device runs it); a bad file is an ImageError for that file only.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Sequence

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError, first_line

SIZE = 32
NPY_SUFFIX = ".npy"
# Inputs are resized to 32x32: anything beyond a large photo (about 6000x4000) is
# refused before it is decoded (Pillow's own bomb limit is ~179 million pixels).
MAX_PIXELS = 25_000_000


class ImageError(UserError):
    """One input file that is missing, corrupt or of an unusable shape."""


@dataclasses.dataclass(frozen=True)
class Loaded:
    names: tuple[str, ...]  # one per image: the path, or path[i] for a .npy batch
    pixels: np.ndarray  # uint8 (N, 32, 32, 3) RGB
    warnings: tuple[str, ...] = ()  # conversions applied (resizing, channels), for the user


def load_file(path: str | os.PathLike, *, strict: bool = False) -> Loaded:
    """One PNG/JPEG image or .npy batch. Grayscale, palette and RGBA/LA become RGB (alpha
    dropped); other sizes are resized to 32x32 (bilinear, antialiased) with a warning, or
    refused when `strict`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image.")
    try:  # a FIFO or a device would block or never end: refused unread
        fileio.check_regular(path, follow_links=True)
    except UserError as e:
        raise ImageError(str(e)) from None
    if path.lower().endswith(NPY_SUFFIX):
        return _load_npy(path)
    return _load_image(path, strict)


def _load_image(path: str, strict: bool) -> Loaded:
    from PIL import Image, UnidentifiedImageError

    try:
        # Opened once, as the regular file checked in load_file (not one swapped in since).
        with fileio.open_regular(path, follow_links=True) as f, Image.open(f) as img:
            mode, size, fmt = img.mode, img.size, img.format  # the header: nothing decoded
            if size[0] * size[1] > MAX_PIXELS:
                raise ImageError(f"{path}: is {size[0]}x{size[1]} pixels, more than the "
                                 f"{MAX_PIXELS:,} this tool decodes (a 32x32 model input).")
            img.load()  # decode now, so truncated files fail here
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: declares more than the {MAX_PIXELS:,} pixels this tool "
                         f"decodes (Pillow: {first_line(e)}).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({first_line(e)}).") from None
    warnings = []
    if _is_wide_gray(mode, fmt):
        warnings.append(f"{path}: converted 16-bit grayscale ({mode}) to 8-bit RGB")
    elif mode not in ("RGB",):
        warnings.append(f"{path}: converted {mode} to RGB")
    if size != (SIZE, SIZE):
        if strict:
            raise ImageError(f"{path}: is {size[0]}x{size[1]}, not {SIZE}x{SIZE} "
                             "(not resized under strict).", argument="strict")
        warnings.append(f"{path}: resized {size[0]}x{size[1]} to {SIZE}x{SIZE}; "
                        "predictions on resized images are less reliable")
        rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, np.uint8)[None]
    return Loaded((path,), pixels, tuple(warnings))


def _is_wide_gray(mode: str, fmt: str | None) -> bool:
    """Whether Pillow opened a 16-bit grayscale image (older Pillows: PNGs as mode I)."""
    return mode in ("I;16", "I;16L", "I;16B", "I;16N") or (mode == "I" and fmt == "PNG")


def _to_rgb(img):
    # 16-bit grayscale scaled (65535 -> 255): Pillow's convert("RGB") clips it, all white.
    from PIL import Image

    if _is_wide_gray(img.mode, img.format):
        wide = np.clip(np.asarray(img, np.float64), 0, 65535)
        return Image.fromarray(np.rint(wide / 257).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def _load_npy(path: str) -> Loaded:
    try:
        # Memory-mapped: a header that claims a huge array costs nothing until read.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, OverflowError) as e:
        # OverflowError: a header with a negative shape (mmap's length)
        raise ImageError(f"{path}: not a readable .npy array ({first_line(e)}).") from None
    pixels = to_pixels(array, what=path)
    batch = array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4))
    names = tuple(f"{path}[{i}]" for i in range(len(pixels))) if batch else (path,)
    return Loaded(names, pixels)


def to_pixels(array: np.ndarray, what: str = "array") -> np.ndarray:
    """(32, 32[, C]) or (N, 32, 32[, C]) images, C in {1, 3, 4}, as uint8 RGB (N, 32, 32, 3):
    uint8, or numbers on the [0, 255] scale (rounded). Floats all in [0, 1] are refused, not
    rescaled: the models take 0-255 pixels, and such an array is more likely pre-scaled
    than a very dark image."""
    a = np.asarray(array)
    if a.dtype.kind not in "uif" and a.dtype != np.bool_:
        raise ImageError(f"{what}: dtype {a.dtype} is not a pixel type.")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
        a = a[..., None]  # grayscale without a channel axis
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1:3] != (SIZE, SIZE) or a.shape[3] not in (1, 3, 4):
        raise ImageError(f"{what}: shape {np.shape(array)} is not (N,) 32x32 with 1, 3 "
                         "or 4 channels.")
    if a.shape[3] == 1:
        a = np.repeat(a, 3, axis=3)
    elif a.shape[3] == 4:
        a = a[..., :3]
    if a.dtype == np.uint8:
        return np.array(a, np.uint8)  # a copy (the input may be memory-mapped)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ImageError(f"{what}: holds NaN or infinite values.")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ImageError(f"{what}: values in [{a.min():g}, {a.max():g}] are not pixels "
                         "on the [0, 255] scale.")
    if np.asarray(array).dtype.kind == "f" and a.size and 0 < a.max() <= 1:
        raise ImageError(f"{what}: float values in [{a.min():g}, {a.max():g}] look like "
                         "pixels scaled to [0, 1], but the models take 0-255 pixels: "
                         "multiply by 255 (or save uint8).")
    return np.rint(a).astype(np.uint8)


def load_files(paths: Sequence[str], *, strict: bool = False) -> tuple[Loaded, list[ImageError]]:
    """Reads every file it can: (what was read, as one batch in the order given; one error
    per file that failed)."""
    loaded, errors = [], []
    for path in paths:
        try:
            loaded.append(load_file(path, strict=strict))
        except ImageError as e:
            errors.append(e)
    pixels = [x.pixels for x in loaded] or [np.zeros((0, SIZE, SIZE, 3), np.uint8)]
    return Loaded(tuple(n for x in loaded for n in x.names), np.concatenate(pixels),
                  tuple(w for x in loaded for w in x.warnings)), errors

