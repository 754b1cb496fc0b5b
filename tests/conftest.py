"""Shared fixtures: where ../shared is, and real CIFAR-10 built from it once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KRC_SHARED", REPO.parent / "shared"))
CIFAR_JPEG = SHARED / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
MAKE_CIFAR = SHARED / "data" / "cifar10" / "make_cifar10.py"
REFERENCE = SHARED / "data" / "reference"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (real-data checks need ../shared)")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/data/reference: trained PyTorch weights as .npz."""
    _need(REFERENCE / "resnet20.npz")
    return REFERENCE


@pytest.fixture(scope="session")
def cifar10_local(tmp_path_factory) -> Path:
    """A real CIFAR-10 copy in the official layouts (built from the JPEG copy, ~20 s).

    Returns the folder holding cifar-10-batches-bin/ and cifar-10-batches-py/.
    """
    _need(MAKE_CIFAR)
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(MAKE_CIFAR), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def jpeg_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 JPEG test images decoded with Pillow: (uint8 N,32,32,3), int labels.

    Sorted by file name, so the order is stable across runs.
    """
    _need(CIFAR_JPEG)
    from PIL import Image
    import io

    items = []
    with tarfile.open(CIFAR_JPEG) as tar:
        for m in tar:
            if m.isfile() and m.name.startswith("test/") and m.name.endswith(".jpg"):
                cls = m.name.split("/")[1]
                img = np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB"))
                items.append((m.name, CLASSES.index(cls), img))
    items.sort(key=lambda t: t[0])
    return (np.stack([t[2] for t in items]), np.asarray([t[1] for t in items], np.int64))
