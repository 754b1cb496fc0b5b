"""datasets: load() by name, a local copy as a Cifar10, tensorflow-datasets, synthetic
data, the hold-out split, real CIFAR-10. The file formats are test_cifar_files'."""

from __future__ import annotations

import numpy as np
import pytest

from keras_resnet_cifar.data import cifar_files, datasets
from keras_resnet_cifar.errors import DataError, UserError

RECORDS = 20  # per batch in the fake: 5 x 20 train + 20 test


def _write_binary_copy(root) -> None:
    """A tiny binary-format copy with a class-name file of non-standard names."""
    folder = root / cifar_files.BIN_DIR
    folder.mkdir()
    rng = np.random.default_rng(0)
    for batch in (*cifar_files.TRAIN_BATCHES, cifar_files.TEST_BATCH):
        records = rng.integers(0, 256, (RECORDS, cifar_files.RECORD_BYTES), dtype=np.uint8)
        records[:, 0] = np.arange(RECORDS) % 10
        (folder / f"{batch}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"n{i}" for i in range(10)))


def test_read_local_is_a_cifar10_with_the_standard_class_names(tmp_path):
    _write_binary_copy(tmp_path)
    got = datasets.read_local(str(tmp_path), records_per_batch=RECORDS)
    assert isinstance(got, datasets.Cifar10)
    assert (len(got.train), len(got.test)) == (5 * RECORDS, RECORDS)
    assert got.train.images.shape == (5 * RECORDS, 32, 32, 3)
    assert got.class_names == datasets.CLASS_NAMES  # batches.meta.txt is not read
    assert got.source.startswith(cifar_files.BIN_DIR)
    # load() itself expects the official record counts.
    with pytest.raises(DataError, match=r"data_batch_1\.bin has 61,460 bytes"):
        datasets.load("cifar10", str(tmp_path))


def test_a_local_copy_may_be_named_from_home(tmp_path, monkeypatch):
    """docs/api.md's load_data("cifar10", "~/data/cifar10"): ~ is the user's home folder."""
    _write_binary_copy(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"data_batch_1\.bin has 61,460 bytes"):  # found
        datasets.load("cifar10", "~")


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and message.endswith("."), message
    return message


# --- load(), tensorflow-datasets --------------------------------------------------------

def test_unknown_dataset():
    with pytest.raises(UserError, match="'mnist'") as e:
        datasets.load("mnist")
    assert e.value.argument == "dataset"


def test_tfds_offline_fails_with_hint_and_does_not_download(monkeypatch):
    """Not prepared and the host unreachable: the hint, and tfds.load is never called."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class Builder:
        def is_prepared(self):
            return False

    def load(*args, **kwargs):
        raise AssertionError("tfds.load must not be tried offline")

    probed = []
    monkeypatch.setattr(tfds, "builder", lambda name: Builder())
    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(datasets, "_reachable",
                        lambda *a, **k: probed.append(a) or False)
    with pytest.raises(DataError, match="www.cs.toronto.edu is unreachable") as e:
        datasets.load("cifar10")
    assert e.value.argument == "data_dir" and "cifar-10-batches-bin" in str(e.value)
    assert probed == [datasets._TFDS_HOST]
    _one_line(e)


def test_reachable_probe_on_loopback(monkeypatch):
    """The probe itself: a listening loopback port is reachable, a closed one is not."""
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert datasets._reachable("127.0.0.1", port, timeout=2)
    assert not datasets._reachable("127.0.0.1", port, timeout=2)


def test_tfds_failure_becomes_data_error(monkeypatch):
    """Whatever tfds raises once past the reachability check ends in the same hint."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class Builder:
        def is_prepared(self):
            return False

    def fail(*args, **kwargs):
        raise ConnectionError("Max retries exceeded\nwith url: ...")

    monkeypatch.setattr(tfds, "builder", lambda name: Builder())
    monkeypatch.setattr(tfds, "load", fail)
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: True)
    with pytest.raises(DataError, match=r"tensorflow-datasets could not provide cifar10 "
                                        r"\(ConnectionError: Max retries exceeded\); pass") as e:
        datasets.load("cifar10")
    _one_line(e)


def test_tfds_result_is_converted(monkeypatch):
    """What tfds.load(batch_size=-1, as_supervised=True) returns becomes a Cifar10."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    class Builder:
        def is_prepared(self):
            return True

    def fake_load(name, split, batch_size, as_supervised):
        assert (name, split, batch_size, as_supervised) == (
            "cifar10", ["train", "test"], -1, True)
        return [(tf.zeros((n, 32, 32, 3), tf.uint8), tf.range(n, dtype=tf.int64) % 10)
                for n in (50, 10)]

    monkeypatch.setattr(tfds, "builder", lambda name: Builder())
    monkeypatch.setattr(tfds, "load", fake_load)
    got = datasets.load("cifar10")
    assert got.train.images.shape == (50, 32, 32, 3) and got.test.labels.dtype == np.int64
    assert isinstance(got.train.images, np.ndarray)
    assert got.source == "tensorflow-datasets cifar10"


# --- Synthetic data and the hold-out split -------------------------------------------------

def test_synthetic_is_deterministic_and_learnable():
    a = datasets.load("synthetic", seed=3, synthetic_sizes=(600, 200))
    b = datasets.synthetic(600, 200, seed=3)
    c = datasets.synthetic(600, 300, seed=4)
    assert a.train.images.shape == (600, 32, 32, 3) and a.train.images.dtype == np.uint8
    assert a.test.labels.dtype == np.int64 and a.source == "synthetic (seed 3)"
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.train.images, c.train.images)
    assert np.bincount(a.train.labels).tolist() == [60] * 10
    assert a.train.images.std() > 30  # noisy, not flat prototypes
    # Learnable: class means of the training images classify the test images.
    means = np.stack([a.train.images[a.train.labels == k].reshape(-1, 3072).mean(0)
                      for k in range(10)])
    x = a.test.images.reshape(-1, 3072).astype(np.float64)
    guess = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (guess == a.test.labels).mean() > 0.9


def test_holdout():
    split = datasets.synthetic(100, 0, seed=0).train
    rest, held = datasets.holdout(split, 30, seed=1)
    assert (len(rest), len(held)) == (70, 30)
    again = datasets.holdout(split, 30, seed=1)
    np.testing.assert_array_equal(held.images, again[1].images)
    assert not np.array_equal(held.labels, datasets.holdout(split, 30, seed=2)[1].labels)
    # Disjoint, together the whole split (images are unique with noise this large).
    keys = lambda s: {img.tobytes() for img in s.images}
    assert keys(rest) | keys(held) == keys(split) and not keys(rest) & keys(held)
    assert len(datasets.holdout(split, 0, seed=0)[1]) == 0
    with pytest.raises(UserError, match="Cannot hold out 101 of 100"):
        datasets.holdout(split, 101, seed=0)


# --- Real CIFAR-10 (../shared) -------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.slow
def test_real_copy_both_formats(cifar10_local):
    from_bin = datasets.load("cifar10", str(cifar10_local))  # prefers the binary folder
    from_py = datasets.read_local(str(cifar10_local / cifar_files.PY_DIR))
    assert from_bin.source.startswith(cifar_files.BIN_DIR)
    for d in (from_bin, from_py):
        assert d.train.images.shape == (50000, 32, 32, 3)
        assert d.test.images.shape == (10000, 32, 32, 3)
        assert np.bincount(d.train.labels).tolist() == [5000] * 10
        assert np.bincount(d.test.labels).tolist() == [1000] * 10
        assert d.class_names == datasets.CLASS_NAMES
    np.testing.assert_array_equal(from_bin.train.images, from_py.train.images)
    np.testing.assert_array_equal(from_bin.train.labels, from_py.train.labels)
    np.testing.assert_array_equal(from_bin.test.images, from_py.test.images)
    np.testing.assert_array_equal(from_bin.test.labels, from_py.test.labels)
