"""cifar_files: the four official layouts on tiny fakes and their failures."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from keras_resnet_cifar.data import cifar_files
from keras_resnet_cifar.errors import DataError

RECORDS = 20  # per batch in the fakes: 5 x 20 train + 20 test
BATCHES = (*cifar_files.TRAIN_BATCHES, cifar_files.TEST_BATCH)
# Class names the fakes carry like a real copy; the reader ignores them.
NAMES = ("a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9")


def _fake_data(seed=0):
    """{batch: (HWC uint8 images, uint8 labels)} with every class in every batch."""
    rng = np.random.default_rng(seed)
    return {b: (rng.integers(0, 256, (RECORDS, 32, 32, 3), dtype=np.uint8),
                (np.arange(RECORDS) % 10).astype(np.uint8)) for b in BATCHES}


def _planes(x):
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def _write_bin(root: Path, data) -> Path:
    d = root / cifar_files.BIN_DIR
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
    d = root / cifar_files.PY_DIR
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
    name = cifar_files.BIN_TAR if fmt.startswith("binary") else cifar_files.PY_TAR
    return _tar(folder, tmp_path / name)


def _read(path) -> SimpleNamespace:
    """What cifar_files.read returns, with the names of a Cifar10 (train.images, ...)."""
    train, test, source = cifar_files.read(str(path), records_per_batch=RECORDS)
    return SimpleNamespace(train=SimpleNamespace(images=train[0], labels=train[1]),
                           test=SimpleNamespace(images=test[0], labels=test[1]),
                           source=source)


# --- Reading ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", cifar_files.FORMATS)
def test_round_trip(tmp_path, fmt):
    data = _fake_data()
    path = _make(tmp_path, fmt, data)
    assert cifar_files.detect_format(str(path)) == fmt
    got = _read(path)
    want_x = np.concatenate([data[b][0] for b in cifar_files.TRAIN_BATCHES])
    want_y = np.concatenate([data[b][1] for b in cifar_files.TRAIN_BATCHES])
    assert got.train.images.dtype == np.uint8 and got.train.labels.dtype == np.int64
    assert got.train.images.shape == (5 * RECORDS, 32, 32, 3)
    np.testing.assert_array_equal(got.train.images, want_x)
    np.testing.assert_array_equal(got.train.labels, want_y)
    np.testing.assert_array_equal(got.test.images, data["test_batch"][0])
    np.testing.assert_array_equal(got.test.labels, data["test_batch"][1])
    assert os.path.basename(path) in got.source


def test_binary_record_layout(tmp_path):
    """Byte 1 + c*1024 + y*32 + x of a record is pixel (y, x) of channel c (R, G, B)."""
    folder = _make(tmp_path, "binary-dir")
    raw = (folder / "data_batch_2.bin").read_bytes()
    got = _read(folder)
    k = 3  # record 3 of batch 2
    rec = raw[k * cifar_files.RECORD_BYTES:(k + 1) * cifar_files.RECORD_BYTES]
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
    assert len(_read(folder).train.labels) == 5 * RECORDS


@pytest.mark.parametrize("present, expected", [
    ((cifar_files.BIN_DIR, cifar_files.PY_DIR, cifar_files.BIN_TAR, cifar_files.PY_TAR), "binary-dir"),
    ((cifar_files.PY_DIR, cifar_files.BIN_TAR, cifar_files.PY_TAR), "python-dir"),
    ((cifar_files.BIN_TAR, cifar_files.PY_TAR), "binary-tar"),
    ((cifar_files.PY_TAR,), "python-tar"),
])
def test_parent_folder_prefers_extracted_then_binary(tmp_path, present, expected):
    parent = tmp_path / "downloads"
    parent.mkdir()
    data = _fake_data()
    for fmt, name in zip(cifar_files.FORMATS, (cifar_files.BIN_DIR, cifar_files.PY_DIR,
                                            cifar_files.BIN_TAR, cifar_files.PY_TAR)):
        made = _make(tmp_path / fmt, fmt, data)
        if name in present:
            made.rename(parent / name)
    assert cifar_files.detect_format(str(parent)) == expected
    np.testing.assert_array_equal(_read(parent).test.images, data["test_batch"][0])


# --- Failures -----------------------------------------------------------------------

def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and message.endswith("."), message
    return message


@pytest.mark.parametrize("fmt", cifar_files.FORMATS)
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
    # Issue 29: a label beyond int64 was an OverflowError.
    ({b"data": np.zeros((RECORDS, 3072), np.uint8), b"labels": [2**70] * RECORDS},
     "has label 1180591620717411303424; CIFAR-10 labels are 0..9"),
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


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    folder = _make(tmp_path, "python-dir")
    _dump(folder / "data_batch_2", {b"data": _Payload(marker), b"labels": [0] * RECORDS})
    with pytest.raises(DataError, match=r"data_batch_2.*(os|posix)\.system") as e:
        _read(folder)
    _one_line(e)
    assert not marker.exists()
    # The payload is real: a plain pickle.load would have run it.
    with open(folder / "data_batch_2", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_class_name_files_are_never_unpickled(tmp_path):
    """batches.meta is not read at all: a payload there cannot run, the copy still reads."""
    marker = tmp_path / "pwned"
    folder = _make(tmp_path, "python-dir")
    _dump(folder / "batches.meta", {b"label_names": _Payload(marker)})
    assert len(_read(folder).test.labels) == RECORDS
    assert not marker.exists()


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

    member = tarfile.TarInfo(f"{cifar_files.BIN_DIR}/data_batch_1.bin")
    member.size = 3_000_000_000
    archive = tmp_path / cifar_files.BIN_TAR
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
        cifar_files.detect_format(str(tmp_path / name))
    _one_line(e)


def test_archive_of_something_else(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    archive = _tar(tmp_path / "other", tmp_path / "other.tar.gz")
    with pytest.raises(DataError, match="not a CIFAR-10 archive"):
        cifar_files.detect_format(str(archive))




def test_reading_says_nothing_at_info_level(tmp_path, monkeypatch):
    """F3: the tools say where their data came from (the source returned here) once;
    the reader does not say it a second time."""
    from absl import logging

    said = []
    monkeypatch.setattr(logging, "info", lambda *args: said.append(args))
    _read(_make(tmp_path, "bin"))
    assert said == []


def _bounded(script: str) -> "subprocess.CompletedProcess":
    """Runs ``script`` in a fresh interpreter limited to 1.5 GB of address space and 60 s."""
    import subprocess
    import sys
    import textwrap

    limit = ("import resource\n"
             "resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))\n")
    return subprocess.run([sys.executable, "-c", limit + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=60)


def test_extended_tar_headers_are_bounded_before_they_are_read(tmp_path):
    # Issue 29: a tar with a 1.5 GB pax header (3.6 GB resident) and a GNU long-name
    # member (3.1 GB); a 414-byte archive whose pax header holds 300,000 digits (91 s of
    # CPU in the standard library's tar parser). Each is built small: a header that lies,
    # or digits that gzip squeezes to a few hundred bytes.
    import gzip
    import time

    cases = {}
    for name, kind, size in (("pax", tarfile.XHDTYPE, 1_500_000_000),
                             ("longname", tarfile.GNUTYPE_LONGNAME, 3_100_000_000)):
        header = tarfile.TarInfo("././@LongLink")
        header.type, header.size = kind, size
        cases[name] = header.tobuf(tarfile.GNU_FORMAT) + b"\0" * 4096
    digits = b"9" * 300_000 + b" path=x\n"
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, len(digits)
    cases["digits"] = (header.tobuf(tarfile.USTAR_FORMAT) + digits
                       + b"\0" * (-len(digits) % 512) + b"\0" * 1024)
    for name, raw in cases.items():
        archive = tmp_path / name / cifar_files.BIN_TAR
        archive.parent.mkdir()
        with gzip.open(archive, "wb") as f:
            f.write(raw)
        assert archive.stat().st_size < 2048
        start = time.monotonic()
        done = _bounded(f"""
            from keras_resnet_cifar.data import cifar_files
            from keras_resnet_cifar.errors import DataError
            try:
                cifar_files.read({str(archive)!r}, records_per_batch={RECORDS})
            except DataError as e:
                print(e)
        """)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        announced = {"pax": 1_500_000_000, "longname": 3_100_000_000, "digits": len(digits)}
        assert done.stdout.splitlines() == [
            f"{archive}: a tar header announces {announced[name]:,} bytes of extended header "
            "(pax or long name), more than 8,192: not a genuine CIFAR-10 archive; refused "
            "before reading it."]
        assert time.monotonic() - start < 30


def test_train_images_is_what_the_held_out_split_leaves():
    # One function for TrainConfig and the report (whose configs TrainConfig may refuse).
    assert cifar_files.train_images("cifar10", 5000, 0) == 50_000
    assert cifar_files.train_images("cifar10", 5000, 5000) == 45_000
    assert cifar_files.train_images(None, 0, 0) == 50_000  # a config without "dataset"
    assert cifar_files.train_images("synthetic", 640, 40) == 600
    assert cifar_files.train_images("synthetic", 64, 64) == 0  # callers refuse or clamp
