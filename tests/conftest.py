"""Shared fixtures: the reference weights and real CIFAR-10, for the real-data tests.

``KRC_REFERENCE``: a folder of the reference weights as ``resnetN.npz`` (made with
``keras_resnet_cifar.convert_checkpoint``). ``KRC_CIFAR10``: a folder holding both
``cifar-10-batches-bin/`` and ``cifar-10-batches-py/``. Without them the fixtures
fall back to a ``shared/`` folder beside the checkout (``KRC_SHARED`` names another),
as CI lays it out, and skip, saying so, when nothing is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KRC_SHARED", REPO.parent / "shared")).expanduser()
MAKE_CIFAR = SHARED / "data" / "cifar10" / "make_cifar10.py"
REFERENCE = Path(os.environ.get("KRC_REFERENCE", SHARED / "data" / "reference")).expanduser()


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (real-data checks need KRC_REFERENCE and KRC_CIFAR10: "
                    "docs/testing.md)")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference's trained PyTorch weights as .npz (KRC_REFERENCE)."""
    _need(REFERENCE / "resnet20.npz")
    return REFERENCE


@pytest.fixture(scope="session")
def cifar10_local(tmp_path_factory) -> Path:
    """Real CIFAR-10, original pixels, in the official layouts (``make_cifar10.py``, ~45 s).

    Returns the folder holding cifar-10-batches-bin/ and cifar-10-batches-py/.
    ``KRC_CIFAR10=<dir>`` names a copy made before (the same script's output) instead.
    """
    made = os.environ.get("KRC_CIFAR10")
    if made:
        return Path(made).expanduser()
    _need(MAKE_CIFAR)
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(MAKE_CIFAR), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def cifar10_test_set(cifar10_local) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 original test images as the project reads them: (uint8 N,32,32,3), labels."""
    from keras_resnet_cifar.data import datasets

    test = datasets.read_local(str(cifar10_local)).test
    return test.images, test.labels
