"""CIFAR-10 as numpy arrays: a user's downloaded copy, tensorflow-datasets, or synthetic.
No TensorFlow import: config.py reads DATASETS before TensorFlow loads."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import urllib.parse
import urllib.request

import numpy as np
from absl import logging

from keras_resnet_cifar.data import cifar_files
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES
from keras_resnet_cifar.errors import DataError, UserError, first_line as _first_line

DATASETS = ("cifar10", "synthetic")
train_images = cifar_files.train_images
CLASS_NAMES = CIFAR10_CLASSES
NUM_CLASSES = cifar_files.NUM_CLASSES

# Where tensorflow-datasets downloads cifar10 from (its cifar.py). Offline, it retries for
# about 3.5 minutes, so load() first checks in a few seconds that the host can be reached.
_TFDS_HOST = ("www.cs.toronto.edu", 443)
_PROBE_TIMEOUT_S = 5.0
_NO_DOWNLOAD_HINT = (f"pass data_dir=<folder with {cifar_files.BIN_DIR}, "
                     f"{cifar_files.PY_DIR}, {cifar_files.BIN_TAR} or {cifar_files.PY_TAR}>")


def batches(images: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one pass over `images` (the last one partial unless `drop_remainder`)."""
    return images // batch_size if drop_remainder else -(-images // batch_size)


@dataclasses.dataclass(frozen=True)
class Split:
    """uint8 images (N, 32, 32, 3) RGB and int64 labels (N,) in 0..9."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Cifar10:
    train: Split
    test: Split
    class_names: tuple[str, ...]
    source: str


def load(dataset: str = "cifar10", data_dir: str | None = None, *, seed: int = 0,
         synthetic_sizes: tuple[int, int] = (50000, 10000)) -> Cifar10:
    """Loads "cifar10" or "synthetic" (seed and synthetic_sizes are synthetic's). cifar10
    comes from the local copy `data_dir` when given (cifar_files.read), else from
    tensorflow-datasets (downloaded on first use into ~/tensorflow_datasets or TFDS_DATA_DIR)."""
    if dataset == "synthetic":
        if data_dir:
            logging.warning("data_dir=%s is not used by the synthetic data set.", data_dir)
        return synthetic(*synthetic_sizes, seed=seed)
    if dataset == "cifar10":
        return read_local(os.path.expanduser(data_dir)) if data_dir else _load_tfds()
    raise UserError(f"Unknown dataset {dataset!r}: expected one of "
                    f"{', '.join(repr(d) for d in DATASETS)}.", argument="dataset")


def read_local(path: str, *, records_per_batch: int = cifar_files.RECORDS_PER_BATCH) -> Cifar10:
    train, test, source = cifar_files.read(path, records_per_batch=records_per_batch)
    return Cifar10(train=Split(*train), test=Split(*test), class_names=CLASS_NAMES, source=source)


def _load_tfds() -> Cifar10:
    def fail(message):
        return DataError(f"{message}; {_NO_DOWNLOAD_HINT}.", argument="data_dir")

    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise fail("tensorflow-datasets is not installed") from e
    try:
        prepared = tfds.builder("cifar10").is_prepared()
    except Exception as e:
        raise fail(f"tensorflow-datasets cannot provide cifar10 ({_first_line(e)})") from e
    if not prepared and not _reachable(*_TFDS_HOST):
        raise fail(f"CIFAR-10 is not in tensorflow-datasets' folder and cannot be "
                   f"downloaded ({_TFDS_HOST[0]} is unreachable)")
    try:
        train, test = tfds.as_numpy(tfds.load("cifar10", split=["train", "test"],
                                              batch_size=-1, as_supervised=True))
    except Exception as e:  # network, disk, or tfds' own bugs: all mean "use a local copy"
        raise fail(f"tensorflow-datasets could not provide cifar10 "
                   f"({type(e).__name__}: {_first_line(e)})") from e
    return Cifar10(train=Split(np.asarray(train[0], np.uint8), np.asarray(train[1], np.int64)),
                   test=Split(np.asarray(test[0], np.uint8), np.asarray(test[1], np.int64)),
                   class_names=CLASS_NAMES, source="tensorflow-datasets cifar10")


def _reachable(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host` (or the HTTPS proxy) opens; probed in a daemon
    thread joined with a timeout, as name resolution ignores socket timeouts."""
    proxy = urllib.request.getproxies().get("https")
    if proxy:
        parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"//{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    ok = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def synthetic(num_train: int, num_test: int, seed: int = 0) -> Cifar10:
    """Random CIFAR-shaped data a network can learn, deterministic in `seed`: an image is its
    class's prototype (a colour plus a smooth 4x4-cell pattern) plus pixel noise (std 50).
    Easy on purpose (nearest class mean gets it all right), so a few smoke steps visibly lower
    the loss. Classes are balanced (to within one image) and shuffled."""
    if num_train < 0 or num_test < 0:
        raise UserError(f"Synthetic sizes must be >= 0; got {num_train}, {num_test}.")
    # Independent streams, so the test set does not depend on the training size.
    proto_rng, train_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    colours = proto_rng.uniform(60, 196, size=(NUM_CLASSES, 1, 1, 3))
    patterns = np.kron(proto_rng.uniform(-40, 40, size=(NUM_CLASSES, 4, 4, 3)),
                       np.ones((1, 8, 8, 1)))
    prototypes = (colours + patterns).astype(np.float32)

    def make(n, rng):
        try:
            labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
            images = np.empty((n, 32, 32, 3), np.uint8)
        except (MemoryError, ValueError):  # ValueError: "array is too big"
            raise UserError(f"Cannot hold {n:,} synthetic images in memory "
                            f"({n * cifar_files.IMAGE_BYTES / 1e9:,.1f} GB).") from None
        for start in range(0, n, 4096):  # in chunks: float noise for 50,000 is 600 MB
            y = labels[start:start + 4096]
            noise = rng.standard_normal((len(y), 32, 32, 3), np.float32) * 50.0
            images[start:start + 4096] = np.clip(prototypes[y] + noise, 0, 255).round()
        return Split(images, labels)

    return Cifar10(train=make(num_train, train_rng), test=make(num_test, test_rng),
                   class_names=CLASS_NAMES, source=f"synthetic (seed {seed})")


def fixed_subset(split: Split, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`size` examples drawn without replacement, fixed by `seed`, in the split's order
    (the same in every run: the study's curve points and layer statistics)."""
    size = min(size, len(split))
    index = np.sort(np.random.default_rng(seed).permutation(len(split))[:size])
    return split.images[index], split.labels[index]


def holdout(split: Split, n: int, seed: int) -> tuple[Split, Split]:
    """(the rest, `n` random examples held out), each in the original order."""
    if not 0 <= n <= len(split):
        raise UserError(f"Cannot hold out {n} of {len(split)} training examples.")
    held = np.zeros(len(split), bool)
    held[np.random.default_rng(seed).permutation(len(split))[:n]] = True
    return (Split(split.images[~held], split.labels[~held]),
            Split(split.images[held], split.labels[held]))
