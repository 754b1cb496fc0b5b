"""Shared fixtures: the reference weights and real CIFAR-10, for the real-data tests.

``KRC_REFERENCE``: a folder of the reference weights as ``resnetN.npz`` (made with
``keras_resnet_cifar.convert_checkpoint``). ``KRC_CIFAR10``: a folder holding both
``cifar-10-batches-bin/`` and ``cifar-10-batches-py/``. Without them the fixtures
fall back to a ``shared/`` folder beside the checkout (``KRC_SHARED`` names another),
as CI lays it out, and skip, saying so, when nothing is there.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
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


# --- Image files (data/images.py and the predict command) ---------------------------------

@pytest.fixture(scope="session")
def image_pixels() -> np.ndarray:
    """Eight synthetic 32x32 RGB test images (uint8), the same on every call."""
    from keras_resnet_cifar.data import datasets

    return datasets.synthetic(0, 8, seed=3).test.images


@pytest.fixture()
def image_files(tmp_path, image_pixels):
    """Inputs of every kind in tmp_path: PNG, JPEG, npy batch, gray, RGBA, big, corrupt."""
    from PIL import Image

    pixels = image_pixels
    Image.fromarray(pixels[0]).save(tmp_path / "a.png")
    Image.fromarray(pixels[1]).save(tmp_path / "b.jpg", quality=95)
    np.save(tmp_path / "batch.npy", pixels[2:5])
    Image.fromarray(pixels[5]).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(pixels[6]).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(pixels[7]).resize((64, 48)).save(tmp_path / "big.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.fixture()
def png_header_only():
    """Writes a tiny PNG file that declares a huge image (a decompression bomb's header)."""
    import struct
    import zlib

    def write(path: Path, width: int, height: int) -> None:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                         + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return write


# --- Downloads: a loopback HTTP server, never the internet --------------------------

RELEASED_RESNET20 = REPO / "tests" / "fixtures" / "resnet20-12fca82f.th"


@pytest.fixture(scope="session")
def released_resnet20() -> Path:
    """The reference's released ResNet-20 checkpoint, byte for byte (tests/fixtures/README.md)."""
    return RELEASED_RESNET20


@pytest.fixture
def http_server():
    """Serves folders over loopback HTTP: ``http_server(folder)`` -> (base URL of
    ``folder/models/``, the paths asked for so far). Stopped at the test's end."""
    import functools
    import http.server
    import threading

    servers = []

    def start(folder: Path):
        asked = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                asked.append(self.path)

        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/models/", asked

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens (a machine without internet, fast)."""
    import socket

    with socket.socket() as s:  # bound, then closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/"


# --- This user's export key (deploy/seal.py) -------------------------------------------
# Exports made by the tests are sealed with a key of their own, never the user's
# ~/.config/keras-resnet-cifar/export.key; subprocesses inherit the variable.
_CONFIG_HOME = tempfile.mkdtemp(prefix="krc-test-config-")
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME
atexit.register(shutil.rmtree, _CONFIG_HOME, True)
