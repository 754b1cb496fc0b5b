"""Reads a downloaded CIFAR-10 copy in any official layout (https://www.cs.toronto.edu/~kriz/
cifar.html): the binary or python batches, extracted or as their .tar.gz (streamed, never
extracted), all validated before use. The class-name files are not read (a genuine copy names
the standard classes, and a file not unpickled is safest).
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import posixpath
import tarfile
import zlib
from typing import Callable, Iterator

import numpy as np
from absl import logging

from keras_resnet_cifar import fileio
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES
from keras_resnet_cifar.errors import DataError, first_line as _first_line

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

NUM_CLASSES = len(CIFAR10_CLASSES)

# Five training batches and one test batch of 10,000 records (tests read smaller fakes).
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_BATCHES = (*TRAIN_BATCHES, TEST_BATCH)
RECORDS_PER_BATCH = 10_000
TRAIN_IMAGES = len(TRAIN_BATCHES) * RECORDS_PER_BATCH
IMAGE_BYTES = 32 * 32 * 3
RECORD_BYTES = 1 + IMAGE_BYTES  # one label byte, then the R, G and B planes

# The largest file of a genuine copy is a 31 MB batch; a file or archive member that
# announces more is refused before it is read (a few MB of gzip can inflate to GBs).
MAX_FILE_BYTES = 64 << 20
# A tar's extended headers (pax, GNU long names) hold a path (PATH_MAX 4,096 fits twice).
# The standard library parses one in time quadratic in a run of digits (8 KiB: 0.35 s;
# 64 KiB: 28 s), so a larger one is refused from its 512-byte header, before it is read.
MAX_TAR_HEADER_BYTES = 8 << 10
_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                     tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
BIN_TAR, PY_TAR = "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"
FORMATS = ("binary-dir", "python-dir", "binary-tar", "python-tar")
Arrays = tuple[np.ndarray, np.ndarray]  # images (N, 32, 32, 3) uint8, labels (N,) int64


class _HeaderTooLarge(tarfile.TarError):
    pass


class _BoundedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tar):
        if self.type in _EXTENDED_HEADERS and self.size > MAX_TAR_HEADER_BYTES:
            raise _HeaderTooLarge(f"a tar header announces {self.size:,} bytes of extended header "
                                  f"(pax or long name), more than {MAX_TAR_HEADER_BYTES:,}: not a "
                                  "genuine CIFAR-10 archive; refused before reading it")
        return super()._proc_member(tar)


def train_images(dataset: str | None, synthetic_train_size: int, validation_split: int) -> int:
    """A run's training images: CIFAR-10's (or the synthetic set's) less `validation_split` (< 1:
    none left); plain values, for TrainConfig and the report's configs (which it may refuse)."""
    images = synthetic_train_size if dataset == "synthetic" else TRAIN_IMAGES
    return images - validation_split


def detect_format(path: str) -> str:
    """One of FORMATS; cheap (no batch is read), so a command refuses a wrong path at once."""
    return _locate(path)[0]


def read(path: str, *, records_per_batch: int = RECORDS_PER_BATCH) -> tuple[Arrays, Arrays, str]:
    """(train, test, where it was read from) of the archive or extracted folder `path` or
    the one in folder `path` (extracted preferred); DataError for a bad or unsafe file."""
    fmt, where = _locate(path)
    binary = fmt.startswith("binary")
    names = tuple(b + (".bin" if binary else "") for b in _BATCHES)
    files = _read_tar(where) if fmt.endswith("tar") else _read_dir(where, names)
    parse = _parse_binary if binary else _parse_pickle
    batches = []
    for name in names:
        if name not in files:
            raise DataError(f"{_describe(where, fmt, name)} is missing: a CIFAR-10 copy "
                            f"has {', '.join(names[:-1])} and {names[-1]}.")
        batches.append(parse(files[name], _describe(where, fmt, name), records_per_batch))
    train = (_planes_to_hwc([planes for planes, _ in batches[:-1]]),
             np.concatenate([labels for _, labels in batches[:-1]]))
    test = (_planes_to_hwc([batches[-1][0]]), batches[-1][1])
    where = os.path.abspath(where)
    logging.debug("Read CIFAR-10 (%s) from %s: %d train, %d test images.",
                  fmt, where, len(train[1]), len(test[1]))
    return train, test, f"{os.path.basename(where)} at {os.path.dirname(where)}"


def _locate(path: str) -> tuple[str, str]:
    """(format, the file or folder to read) for what the user pointed at."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return _archive_format(path), path
    if not os.path.isdir(path):
        raise DataError(f"CIFAR-10 data path {path} does not exist.")
    own = _folder_format(path)
    if own:
        return own, path
    # Extracted folders first (no decompression), binary before python (no unpickling).
    for name, fmt in zip((BIN_DIR, PY_DIR, BIN_TAR, PY_TAR), FORMATS):
        candidate = os.path.join(path, name)
        if os.path.isdir(candidate) if fmt.endswith("dir") else os.path.isfile(candidate):
            return fmt, candidate
    raise DataError(f"No CIFAR-10 copy found in {path}: expected {BIN_DIR}/, {PY_DIR}/, "
                    f"{BIN_TAR} or {PY_TAR} there, or one of those as the path itself.")


def _folder_format(path: str) -> str | None:
    base = os.path.basename(os.path.normpath(path))
    if base == BIN_DIR or any(os.path.exists(os.path.join(path, f"{b}.bin")) for b in _BATCHES):
        return "binary-dir"
    if base == PY_DIR or any(os.path.exists(os.path.join(path, b)) for b in _BATCHES):
        return "python-dir"
    return None


def _archive_format(path: str) -> str:
    for name, _ in _tar_members(path, lambda name: True):
        top = name.split("/", 1)[0]
        if top in (BIN_DIR, PY_DIR):
            return "binary-tar" if top == BIN_DIR else "python-tar"
    raise DataError(f"{path} holds neither {BIN_DIR}/ nor {PY_DIR}/: it is not a CIFAR-10 archive.")


def _describe(where: str, fmt: str, name: str) -> str:
    top = BIN_DIR if fmt.startswith("binary") else PY_DIR
    return f"{top}/{name} in {where}" if fmt.endswith("tar") else os.path.join(where, name)


def _read_dir(folder: str, names: tuple[str, ...]) -> dict[str, bytes]:
    files = {}
    for name in names:
        file = os.path.join(folder, name)
        if os.path.isfile(file):
            _check_size(os.path.getsize(file), file)
            with open(file, "rb") as f:
                files[name] = f.read()
    return files


def _read_tar(archive: str) -> dict[str, bytes]:
    """The batch members of either archive layout, keyed by base name."""
    wanted = {f"{BIN_DIR}/{b}.bin": f"{b}.bin" for b in _BATCHES}
    wanted.update({f"{PY_DIR}/{b}": b for b in _BATCHES})
    files = {}
    for name, data in _tar_members(archive, wanted.__contains__, read=True):
        if wanted[name] in files:
            raise DataError(f"{archive} holds {name} twice: it is not a genuine CIFAR-10 archive.")
        files[wanted[name]] = data
    return files


def _tar_members(archive: str, want: Callable[[str], bool],
                 read: bool = False) -> Iterator[tuple[str, bytes | None]]:
    """(normalised name, bytes or None) of the wanted regular files, in one forward pass."""
    try:
        with fileio.open_regular(archive, follow_links=True) as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            with tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*",
                              tarinfo=_BoundedTarInfo) as tar:
                for member in tar:
                    name = posixpath.normpath(member.name)
                    # Absolute names and ".." skipped: nothing outside the archive's folders.
                    if not member.isfile() or name.startswith(("/", "..")) or not want(name):
                        continue
                    if read:
                        _check_size(member.size, f"{name} in {archive}")
                    yield name, tar.extractfile(member).read() if read else None
            if read and gzipped:
                # gzip checks its CRC only at the stream's end (tarfile never reads it):
                # read to the end, so corruption is reported rather than parsed as garbage.
                while stream.read(1 << 20):
                    pass
    except _HeaderTooLarge as e:
        raise DataError(f"{archive}: {e}.") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as e:
        raise DataError(f"{archive} is not a readable tar archive (truncated or corrupt?): "
                        f"{_first_line(e)}.") from e


def _check_size(size: int, where: str) -> None:
    if size > MAX_FILE_BYTES:
        raise DataError(f"{where} announces {size:,} bytes, more than any CIFAR-10 file "
                        f"(at most {MAX_FILE_BYTES >> 20} MB): not a genuine copy; refused "
                        "before reading it.")


def _planes_to_hwc(batches: list[np.ndarray]) -> np.ndarray:
    """(n, 3072) R, G, B planes per batch as one (N, 32, 32, 3) array: reshape(N, 3, 32,
    32).transpose(0, 2, 3, 1), but copied a plane at a time, about 6x faster."""
    out = np.empty((sum(len(b) for b in batches), 32 * 32, 3), np.uint8)
    start = 0
    for planes in batches:
        for c in range(3):
            out[start:start + len(planes), :, c] = planes[:, c * 1024:(c + 1) * 1024]
        start += len(planes)
    return out.reshape(-1, 32, 32, 3)


def _parse_binary(data: bytes, where: str, records: int) -> Arrays:
    if len(data) != records * RECORD_BYTES:
        raise DataError(f"{where} has {len(data):,} bytes; a CIFAR-10 batch file has {records:,} "
                        f"records of {RECORD_BYTES} bytes = {records * RECORD_BYTES:,} (truncated "
                        "or not CIFAR-10?).")
    rows = np.frombuffer(data, np.uint8).reshape(records, RECORD_BYTES)
    labels = rows[:, 0].astype(np.int64)
    _check_label(int(labels.max(initial=0)), where)
    return rows[:, 1:], labels


def _parse_pickle(data: bytes, where: str, records: int) -> Arrays:
    try:
        batch = _CifarUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ...
        raise DataError(f"{where} is not a readable CIFAR-10 pickle: "
                        f"{type(e).__name__}: {_first_line(e)}.") from e
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        raise DataError(f"{where} is not a CIFAR-10 batch: expected a dict with "
                        "b'data' and b'labels'.")
    images, labels = batch[b"data"], batch[b"labels"]
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8
            or images.shape != (records, IMAGE_BYTES)):
        got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
               else type(images).__name__)
        raise DataError(f"{where} has b'data' of {got}; expected uint8 ({records}, {IMAGE_BYTES}).")
    if (not isinstance(labels, list) or len(labels) != records
            or not all(type(v) is int and v >= 0 for v in labels)):
        got = f"{len(labels)} items" if isinstance(labels, list) else type(labels).__name__
        raise DataError(f"{where} has b'labels' of {got}; expected a list of "
                        f"{records} non-negative ints.")
    _check_label(max(labels, default=0), where)  # before int64 (2**70 overflows it)
    return images, np.asarray(labels, np.int64)


def _check_label(largest: int, where: str) -> None:
    if largest >= NUM_CLASSES:
        raise DataError(f"{where} has label {largest!s:.40}; CIFAR-10 labels are "
                        f"0..{NUM_CLASSES - 1}.")


def _latin1_encode(text, encoding="latin1"):
    """codecs.encode as protocol-2 pickles use it for bytes; no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"codecs.encode with {encoding!r}")
    return codecs.encode(text, "latin1")


# A pickle is a program. These are every global a genuine CIFAR-10 pickle references
# (pickletools on make_cifar10.py's protocol-2 pickles and the authors' Python 2 files,
# which name numpy.core): array reconstruction and, for bytes, codecs.encode.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode, ("codecs", "encode"): _latin1_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, ints and uint8 arrays; refuses any other global."""

    def __init__(self, file, where: str):
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module, name):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"Refusing to load {self._where}: it references "
                            f"{module}.{name}, not CIFAR-10 data.") from None
