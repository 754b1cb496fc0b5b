"""datasets: the four official layouts on tiny fakes, their failures, real CIFAR-10."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from keras_resnet_cifar.data import datasets
from keras_resnet_cifar.errors import DataError, UserError

RECORDS = 20  # per batch in the fakes: 5 x 20 train + 20 test
BATCHES = (*datasets.TRAIN_BATCHES, datasets.TEST_BATCH)
NAMES = ("a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9")


def _fake_data(seed=0):
    """{batch: (HWC uint8 images, uint8 labels)} with every class in every batch."""
    rng = np.random.default_rng(seed)
    return {b: (rng.integers(0, 256, (RECORDS, 32, 32, 3), dtype=np.uint8),
                (np.arange(RECORDS) % 10).astype(np.uint8)) for b in BATCHES}


def _planes(x):
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def _write_bin(root: Path, data) -> Path:
    d = root / datasets.BIN_DIR
    d.mkdir(parents=True)
    for name, (x, y) in data.items():
        (d / f"{name}.bin").write_bytes(
            np.concatenate([y[:, None], _planes(x)], axis=1).astype(np.uint8).tobytes())
    (d / "batches.meta.txt").write_text("\n".join(NAMES) + "\n\n")
    return d


def _dump(path: Path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # as the authors' files and make_cifar10.py


def _write_py(root: Path, data) -> Path:
    d = root / datasets.PY_DIR
    d.mkdir(parents=True)
    for name, (x, y) in data.items():
        _dump(d / name, {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                         b"data": _planes(x).copy(),
                         b"filenames": [b"f%d.png" % i for i in range(len(y))]})
    _dump(d / "batches.meta", {b"num_cases_per_batch": RECORDS, b"num_vis": 3072,
                               b"label_names": [n.encode() for n in NAMES]})
    return d


def _tar(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name)
    return archive


def _make(tmp_path: Path, fmt: str, data=None) -> Path:
    """A fake copy in ``fmt``; returns what a user would point --data_dir at."""
    data = data or _fake_data()
    src = tmp_path / "src"
    folder = (_write_bin if fmt.startswith("binary") else _write_py)(src, data)
    if fmt.endswith("dir"):
        return folder
    name = datasets.BIN_TAR if fmt.startswith("binary") else datasets.PY_TAR
    return _tar(folder, tmp_path / name)


def _read(path) -> datasets.Cifar10:
    return datasets.read_local(str(path), records_per_batch=RECORDS)


# --- Reading ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", datasets.FORMATS)
def test_round_trip(tmp_path, fmt):
    data = _fake_data()
    path = _make(tmp_path, fmt, data)
    assert datasets.detect_format(str(path)) == fmt
    got = _read(path)
    want_x = np.concatenate([data[b][0] for b in datasets.TRAIN_BATCHES])
    want_y = np.concatenate([data[b][1] for b in datasets.TRAIN_BATCHES])
    assert got.train.images.dtype == np.uint8 and got.train.labels.dtype == np.int64
    assert got.train.images.shape == (5 * RECORDS, 32, 32, 3)
    np.testing.assert_array_equal(got.train.images, want_x)
    np.testing.assert_array_equal(got.train.labels, want_y)
    np.testing.assert_array_equal(got.test.images, data["test_batch"][0])
    np.testing.assert_array_equal(got.test.labels, data["test_batch"][1])
    assert got.class_names == NAMES
    assert os.path.basename(path) in got.source


def test_binary_record_layout(tmp_path):
    """Byte 1 + c*1024 + y*32 + x of a record is pixel (y, x) of channel c (R, G, B)."""
    folder = _make(tmp_path, "binary-dir")
    raw = (folder / "data_batch_2.bin").read_bytes()
    got = _read(folder)
    k = 3  # record 3 of batch 2
    rec = raw[k * datasets.RECORD_BYTES:(k + 1) * datasets.RECORD_BYTES]
    image = got.train.images[RECORDS + k]
    assert got.train.labels[RECORDS + k] == rec[0]
    for (y, x) in ((0, 0), (5, 7), (31, 2), (17, 31)):
        for c in range(3):
            assert image[y, x, c] == rec[1 + c * 1024 + y * 32 + x], (y, x, c)


def test_python_pickle_from_numpy_1_is_accepted(tmp_path):
    """The authors' pickles name numpy.core.multiarray, not numpy._core."""
    folder = _make(tmp_path, "python-dir")
    for name in BATCHES:
        file = folder / name
        raw = file.read_bytes()
        assert b"numpy._core.multiarray\n" in raw
        file.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert len(_read(folder).train) == 5 * RECORDS


@pytest.mark.parametrize("present, expected", [
    ((datasets.BIN_DIR, datasets.PY_DIR, datasets.BIN_TAR, datasets.PY_TAR), "binary-dir"),
    ((datasets.PY_DIR, datasets.BIN_TAR, datasets.PY_TAR), "python-dir"),
    ((datasets.BIN_TAR, datasets.PY_TAR), "binary-tar"),
    ((datasets.PY_TAR,), "python-tar"),
])
def test_parent_folder_prefers_extracted_then_binary(tmp_path, present, expected):
    parent = tmp_path / "downloads"
    parent.mkdir()
    data = _fake_data()
    for fmt, name in zip(datasets.FORMATS, (datasets.BIN_DIR, datasets.PY_DIR,
                                            datasets.BIN_TAR, datasets.PY_TAR)):
        made = _make(tmp_path / fmt, fmt, data)
        if name in present:
            made.rename(parent / name)
    assert datasets.detect_format(str(parent)) == expected
    np.testing.assert_array_equal(_read(parent).test.images, data["test_batch"][0])


def test_load_dispatches_and_missing_class_names_default(tmp_path):
    folder = _make(tmp_path, "binary-dir")
    (folder / "batches.meta.txt").unlink()
    assert _read(folder).class_names == datasets.CLASS_NAMES
    # load() itself expects the official record counts.
    with pytest.raises(DataError, match=r"data_batch_1\.bin has 61,460 bytes"):
        datasets.load("cifar10", str(folder))


# --- Failures -----------------------------------------------------------------------

def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and message.endswith("."), message
    return message


@pytest.mark.parametrize("fmt", datasets.FORMATS)
def test_missing_batch(tmp_path, fmt):
    src = tmp_path / "src"
    folder = (_write_bin if fmt.startswith("binary") else _write_py)(src, _fake_data())
    suffix = ".bin" if fmt.startswith("binary") else ""
    (folder / f"data_batch_3{suffix}").unlink()
    path = folder if fmt.endswith("dir") else _tar(folder, tmp_path / "copy.tar.gz")
    with pytest.raises(DataError, match=rf"data_batch_3{suffix} .*is missing") as e:
        _read(path)
    _one_line(e)


@pytest.mark.parametrize("cut", [1, 3073, -5])
def test_wrong_size_binary_file(tmp_path, cut):
    folder = _make(tmp_path, "binary-dir")
    file = folder / "data_batch_2.bin"
    raw = file.read_bytes()
    file.write_bytes(raw[:-cut] if cut > 0 else raw + b"\0" * -cut)
    with pytest.raises(DataError, match=r"data_batch_2\.bin has [\d,]+ bytes") as e:
        _read(folder)
    _one_line(e)


def test_truncated_pickle(tmp_path):
    folder = _make(tmp_path, "python-dir")
    file = folder / "test_batch"
    file.write_bytes(file.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"test_batch is not a readable CIFAR-10 pickle"):
        _read(folder)


@pytest.mark.parametrize("fmt", ["binary-dir", "python-dir"])
def test_bad_label(tmp_path, fmt):
    data = _fake_data()
    data["data_batch_4"][1][7] = 12
    path = _make(tmp_path, fmt, data)
    with pytest.raises(DataError, match=r"data_batch_4(\.bin)? has label 12") as e:
        _read(path)
    _one_line(e)


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((RECORDS, 3072), np.uint8)},
     "expected a dict with b'data' and b'labels'"),
    ({b"data": np.zeros((RECORDS, 3072), np.float32), b"labels": [0] * RECORDS},
     r"b'data' of float32 \(20, 3072\)"),
    ({b"data": np.zeros((RECORDS - 1, 3072), np.uint8), b"labels": [0] * RECORDS},
     r"b'data' of uint8 \(19, 3072\)"),
    ({b"data": np.zeros((RECORDS, 3072), np.uint8), b"labels": [0] * (RECORDS + 1)},
     "b'labels' of 21 items"),
    ({b"data": np.zeros((RECORDS, 3072), np.uint8), b"labels": ["0"] * RECORDS},
     "list of 20 non-negative ints"),
    ([1, 2, 3], "expected a dict"),
])
def test_malformed_pickle_contents(tmp_path, batch, message):
    folder = _make(tmp_path, "python-dir")
    _dump(folder / "data_batch_1", batch)
    with pytest.raises(DataError, match=message):
        _read(folder)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("member", ["data_batch_2", "batches.meta"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path, member):
    marker = tmp_path / "pwned"
    folder = _make(tmp_path, "python-dir")
    _dump(folder / member, {b"data": _Payload(marker), b"labels": [0] * RECORDS,
                            b"label_names": _Payload(marker)})
    with pytest.raises(DataError, match=rf"Refusing to load .*{member}: it references "
                                        r"(os|posix)\.system, not CIFAR-10 data\.") as e:
        _read(folder)
    _one_line(e)
    assert not marker.exists()
    # The payload is real: a plain pickle.load would have run it.
    with open(folder / member, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_pickle_codecs_limited_to_latin1(tmp_path):
    class Rot13:
        def __reduce__(self):
            import codecs
            return (codecs.encode, ("uryyb", "rot13"))

    folder = _make(tmp_path, "python-dir")
    _dump(folder / "test_batch", {b"data": Rot13(), b"labels": []})
    with pytest.raises(DataError, match="not a readable CIFAR-10 pickle"):
        _read(folder)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_archive(tmp_path, damage):
    archive = _make(tmp_path, "python-tar")
    raw = bytearray(archive.read_bytes())
    if damage == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw[len(raw) // 2:len(raw) // 2 + 64] = b"\xff" * 64
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a readable tar archive") as e:
        _read(archive)
    _one_line(e)


def test_members_announcing_more_than_a_cifar_file_are_refused_before_reading(tmp_path):
    # Issue 16, item 5: a 14 MB .tar.gz announcing a 3 GB member took 56 s and 10 GB.
    import gzip

    member = tarfile.TarInfo(f"{datasets.BIN_DIR}/data_batch_1.bin")
    member.size = 3_000_000_000
    archive = tmp_path / datasets.BIN_TAR
    with gzip.open(archive, "wb") as f:
        f.write(member.tobuf(tarfile.GNU_FORMAT) + b"\0" * 4096)
    with pytest.raises(DataError, match=r"data_batch_1.bin in .* announces 3,000,000,000 "
                                        r"bytes, more than any CIFAR-10 file") as e:
        _read(archive)
    _one_line(e)
    folder = _make(tmp_path / "dir", "binary-dir")
    os.truncate(folder / "test_batch.bin", 100 << 20)  # sparse: costs no disk
    with pytest.raises(DataError, match=r"test_batch.bin announces 104,857,600 bytes"):
        _read(folder)


def test_unsafe_member_names_are_ignored(tmp_path):
    """A member named ../cifar-10-batches-bin/x or /abs/... never stands in for a batch."""
    folder = _make(tmp_path, "binary-dir")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name, filter=lambda m: None if m.name.endswith(
            "test_batch.bin") else m)
        data = (folder / "test_batch.bin").read_bytes()
        for name in (f"../{folder.name}/test_batch.bin", f"/{folder.name}/test_batch.bin"):
            member = tarfile.TarInfo(name)  # add() would strip the leading "/"
            member.size = len(data)
            t.addfile(member, io.BytesIO(data))
    with tarfile.open(archive) as t:
        assert any(n.startswith("/") for n in t.getnames())
    with pytest.raises(DataError, match=r"test_batch\.bin in .*evil\.tar\.gz is missing"):
        _read(archive)


@pytest.mark.parametrize("name, message", [
    ("nope", "does not exist"),
    ("", "No CIFAR-10 copy found in"),
    ("notes.txt", "not a readable tar archive"),
])
def test_not_a_copy(tmp_path, name, message):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=message) as e:
        datasets.detect_format(str(tmp_path / name))
    _one_line(e)


def test_archive_of_something_else(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    archive = _tar(tmp_path / "other", tmp_path / "other.tar.gz")
    with pytest.raises(DataError, match="not a CIFAR-10 archive"):
        datasets.detect_format(str(archive))


# --- load(), tensorflow-datasets --------------------------------------------------------

def test_unknown_dataset():
    with pytest.raises(UserError, match=r"Unknown dataset 'mnist': expected one of "
                                        r"'cifar10', 'synthetic'\."):
        datasets.load("mnist")


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
    with pytest.raises(DataError, match=r"cannot be downloaded \(.* is unreachable\); "
                                        r"pass --data_dir=<folder with cifar-10-batches-bin, "
                                        r"cifar-10-batches-py, .*tar\.gz>\.$") as e:
        datasets.load("cifar10")
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
    from_py = datasets.read_local(str(cifar10_local / datasets.PY_DIR))
    assert from_bin.source.startswith(datasets.BIN_DIR)
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
