"""CIFAR-10 as numpy arrays: a user's downloaded copy, tensorflow-datasets, or synthetic.

Every loader returns a :class:`Cifar10`: uint8 images (N, 32, 32, 3) in RGB,
height-width-channel order, and int64 labels in 0..9.

A local copy may be given in any of the layouts the data set's authors
distribute (https://www.cs.toronto.edu/~kriz/cifar.html), extracted or not:

    cifar-10-binary.tar.gz  ->  cifar-10-batches-bin/  data_batch_{1..5}.bin, test_batch.bin,
                                                       batches.meta.txt
    cifar-10-python.tar.gz  ->  cifar-10-batches-py/   data_batch_{1..5}, test_batch,
                                                       batches.meta  (pickles)

Archives are read member by member in one forward pass, never extracted to disk.
Everything is validated before use (record counts, file sizes, labels), and the
pickles are read with a restricted unpickler that can only rebuild numpy arrays:
a pickle is a program, and a plain ``pickle.load`` of a downloaded file would run
whatever it says.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import io
import os
import pickle
import posixpath
import socket
import tarfile
import threading
import urllib.parse
import urllib.request
import zlib
from typing import Callable, Iterator

import numpy as np
from absl import logging

from keras_resnet_cifar.errors import DataError, UserError, first_line as _first_line
from keras_resnet_cifar.data.labels import CIFAR10_CLASSES

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

DATASETS = ("cifar10", "synthetic")
CLASS_NAMES = CIFAR10_CLASSES
NUM_CLASSES = len(CLASS_NAMES)

# The official layout: five training batches and one test batch of 10,000
# records each. Tests pass a smaller ``records_per_batch`` to read tiny fakes.
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5")
TEST_BATCH = "test_batch"
RECORDS_PER_BATCH = 10_000
IMAGE_BYTES = 32 * 32 * 3
RECORD_BYTES = 1 + IMAGE_BYTES  # one label byte, then the R, G and B planes

# The largest file of a genuine copy is a 31 MB batch; a file or archive member that
# announces more is refused before it is read (a few MB of gzip can inflate to GBs).
MAX_FILE_BYTES = 64 << 20

BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
BIN_TAR, PY_TAR = "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"
FORMATS = ("binary-dir", "python-dir", "binary-tar", "python-tar")

# Where tensorflow-datasets downloads cifar10 from (its cifar.py). Offline, its
# downloader retries for about 3.5 minutes before giving up, so load() first
# checks in a few seconds that the host can be reached at all.
_TFDS_HOST = ("www.cs.toronto.edu", 443)
_PROBE_TIMEOUT_S = 5.0
_NO_DOWNLOAD_HINT = (f"pass --data_dir=<folder with {BIN_DIR}, {PY_DIR}, "
                     f"{BIN_TAR} or {PY_TAR}>")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, 32, 32, 3) RGB and int64 labels (N,) in 0..9."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Cifar10:
    """The training and test splits, the class names and where they came from."""

    train: Split
    test: Split
    class_names: tuple[str, ...]
    source: str


def load(dataset: str = "cifar10", data_dir: str | None = None, *, seed: int = 0,
         synthetic_sizes: tuple[int, int] = (50000, 10000)) -> Cifar10:
    """Loads a data set by name.

    Args:
        dataset: ``"cifar10"`` or ``"synthetic"``.
        data_dir: for ``cifar10``, a local copy (see :func:`read_local`); None or ""
            asks tensorflow-datasets, which downloads it on first use into its own
            folder (``~/tensorflow_datasets`` unless ``TFDS_DATA_DIR`` says
            otherwise). Not used by ``synthetic``.
        seed: seed of the synthetic data.
        synthetic_sizes: (train, test) sizes of the synthetic data.

    Returns:
        A :class:`Cifar10`.

    Raises:
        UserError: unknown data set name.
        DataError: the data cannot be found, fetched or read.
    """
    if dataset == "synthetic":
        if data_dir:
            logging.warning("data_dir=%s is not used by the synthetic data set.", data_dir)
        return synthetic(*synthetic_sizes, seed=seed)
    if dataset == "cifar10":
        return read_local(data_dir) if data_dir else _load_tfds()
    raise UserError(f"Unknown dataset {dataset!r}: expected one of "
                    f"{', '.join(repr(d) for d in DATASETS)}.")


# --- Finding the format -----------------------------------------------------------

def detect_format(path: str) -> str:
    """Says which layout ``path`` holds (see :func:`read_local` for what is accepted).

    Returns:
        ``"binary-dir"``, ``"python-dir"``, ``"binary-tar"`` or ``"python-tar"``.

    Raises:
        DataError: ``path`` is missing or holds none of them.
    """
    return _locate(path)[0]


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
    # A folder holding a copy: extracted folders first (no decompression), binary
    # before python (no unpickling), then the archives.
    for name, fmt in ((BIN_DIR, "binary-dir"), (PY_DIR, "python-dir"),
                      (BIN_TAR, "binary-tar"), (PY_TAR, "python-tar")):
        candidate = os.path.join(path, name)
        if os.path.isdir(candidate) if fmt.endswith("dir") else os.path.isfile(candidate):
            return fmt, candidate
    raise DataError(f"No CIFAR-10 copy found in {path}: expected {BIN_DIR}/, {PY_DIR}/, "
                    f"{BIN_TAR} or {PY_TAR} there, or one of those as the path itself.")


def _folder_format(path: str) -> str | None:
    """The format of an extracted batches folder, by its name or the batch files in it."""
    base = os.path.basename(os.path.normpath(path))
    if base == BIN_DIR or any(os.path.exists(os.path.join(path, f"{b}.bin"))
                              for b in (*TRAIN_BATCHES, TEST_BATCH)):
        return "binary-dir"
    if base == PY_DIR or any(os.path.exists(os.path.join(path, b))
                             for b in (*TRAIN_BATCHES, TEST_BATCH)):
        return "python-dir"
    return None


def _archive_format(path: str) -> str:
    """Which top-level folder the archive holds, from its first members."""
    for name, _ in _tar_members(path, lambda name: True):
        top = name.split("/", 1)[0]
        if top == BIN_DIR:
            return "binary-tar"
        if top == PY_DIR:
            return "python-tar"
    raise DataError(f"{path} holds neither {BIN_DIR}/ nor {PY_DIR}/: it is not a "
                    "CIFAR-10 archive.")


# --- Reading a local copy ---------------------------------------------------------

def read_local(path: str, *, records_per_batch: int = RECORDS_PER_BATCH) -> Cifar10:
    """Reads a downloaded CIFAR-10 copy in any official layout, detected automatically.

    Args:
        path: ``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz``; an extracted
            ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/``; or a folder
            holding any of those four (extracted folders are preferred).
        records_per_batch: records expected in each of the six batch files (the
            official 10,000; tests read smaller fakes).

    Returns:
        A :class:`Cifar10` with 5 x ``records_per_batch`` training and
        ``records_per_batch`` test images.

    Raises:
        DataError: missing, truncated, malformed or unsafe files.
    """
    fmt, where = _locate(path)
    files = _read_tar(where) if fmt.endswith("tar") else _read_dir(where, fmt)
    parse = _parse_binary if fmt.startswith("binary") else _parse_pickle
    suffix = ".bin" if fmt.startswith("binary") else ""
    batches = {}
    for batch in (*TRAIN_BATCHES, TEST_BATCH):
        name = batch + suffix
        if name not in files:
            raise DataError(f"{_describe(where, fmt, name)} is missing: a CIFAR-10 copy "
                            f"has {', '.join(b + suffix for b in TRAIN_BATCHES)} and "
                            f"{TEST_BATCH + suffix}.")
        batches[batch] = parse(files[name], _describe(where, fmt, name), records_per_batch)
    train = Split(_planes_to_hwc([batches[b][0] for b in TRAIN_BATCHES]),
                  np.concatenate([batches[b][1] for b in TRAIN_BATCHES]))
    test = Split(_planes_to_hwc([batches[TEST_BATCH][0]]), batches[TEST_BATCH][1])
    class_names = _class_names(files, fmt, where)
    where = os.path.abspath(where)
    source = f"{os.path.basename(where)} at {os.path.dirname(where)}"
    logging.info("Read CIFAR-10 (%s) from %s: %d train, %d test images.",
                 fmt, where, len(train), len(test))
    return Cifar10(train=train, test=test, class_names=class_names, source=source)


def _describe(where: str, fmt: str, name: str) -> str:
    """How to name one batch file in a message."""
    top = BIN_DIR if fmt.startswith("binary") else PY_DIR
    return f"{top}/{name} in {where}" if fmt.endswith("tar") else os.path.join(where, name)


def _wanted(fmt: str) -> tuple[str, ...]:
    if fmt.startswith("binary"):
        return (*(f"{b}.bin" for b in TRAIN_BATCHES), f"{TEST_BATCH}.bin", "batches.meta.txt")
    return (*TRAIN_BATCHES, TEST_BATCH, "batches.meta")


def _read_dir(folder: str, fmt: str) -> dict[str, bytes]:
    files = {}
    for name in _wanted(fmt):
        file = os.path.join(folder, name)
        if os.path.isfile(file):
            _check_size(os.path.getsize(file), file)
            with open(file, "rb") as f:
                files[name] = f.read()
    return files


def _read_tar(archive: str) -> dict[str, bytes]:
    """The wanted members of either archive layout, keyed by base name."""
    wanted = {f"{BIN_DIR}/{n}": n for n in _wanted("binary-tar")}
    wanted.update({f"{PY_DIR}/{n}": n for n in _wanted("python-tar")})
    files = {}
    for name, data in _tar_members(archive, wanted.__contains__, read=True):
        if wanted[name] in files:
            raise DataError(f"{archive} holds {name} twice: it is not a genuine "
                            "CIFAR-10 archive.")
        files[wanted[name]] = data
    return files


def _tar_members(archive: str, want: Callable[[str], bool],
                 read: bool = False) -> Iterator[tuple[str, bytes | None]]:
    """Yields (normalised name, bytes or None) for the regular-file members ``want``s.

    Streams the archive in one forward pass (tar mode ``r|``). Members with
    absolute names or ``..`` are skipped, so nothing outside the archive's own
    folders can ever be named; nothing is written to disk anyway.
    """
    try:
        with open(archive, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
            with tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*") as tar:
                for member in tar:
                    name = posixpath.normpath(member.name)
                    if not member.isfile() or name.startswith(("/", "..")) or not want(name):
                        continue
                    if read:
                        _check_size(member.size, f"{name} in {archive}")
                    yield name, tar.extractfile(member).read() if read else None
            if read and gzipped:
                # gzip checks its CRC only at the end of the stream (tarfile's own
                # stream reader never does): read to the end, so that corruption is
                # reported as such rather than parsed as garbage.
                while stream.read(1 << 20):
                    pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{archive} is not a readable tar archive (truncated or "
                        f"corrupt?): {_first_line(e)}.") from e


def _check_size(size: int, where: str) -> None:
    """Refuses a file that announces more bytes than any file of a CIFAR-10 copy."""
    if size > MAX_FILE_BYTES:
        raise DataError(f"{where} announces {size:,} bytes, more than any CIFAR-10 file "
                        f"(at most {MAX_FILE_BYTES >> 20} MB): not a genuine copy; "
                        "refused before reading it.")


def _check_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(labels.max())
        raise DataError(f"{where} has label {bad}; CIFAR-10 labels are 0..{NUM_CLASSES - 1}.")


def _planes_to_hwc(batches: list[np.ndarray]) -> np.ndarray:
    """Rows of R, G, B planes (each 32x32 row-major), (n, 3072) per batch, as one
    (N, 32, 32, 3) array: ``reshape(N, 3, 32, 32).transpose(0, 2, 3, 1)``, but
    copied one plane at a time, which is about 6x faster than a transposing copy.
    """
    out = np.empty((sum(len(b) for b in batches), 32 * 32, 3), np.uint8)
    start = 0
    for planes in batches:
        for c in range(3):
            out[start:start + len(planes), :, c] = planes[:, c * 1024:(c + 1) * 1024]
        start += len(planes)
    return out.reshape(-1, 32, 32, 3)


def _parse_binary(data: bytes, where: str, records: int) -> tuple[np.ndarray, np.ndarray]:
    """(planes (records, 3072) uint8, labels int64) of one binary batch file."""
    if len(data) != records * RECORD_BYTES:
        raise DataError(f"{where} has {len(data):,} bytes; a CIFAR-10 batch file has "
                        f"{records:,} records of {RECORD_BYTES} bytes = "
                        f"{records * RECORD_BYTES:,} (truncated or not CIFAR-10?).")
    rows = np.frombuffer(data, np.uint8).reshape(records, RECORD_BYTES)
    labels = rows[:, 0].astype(np.int64)
    _check_labels(labels, where)
    return rows[:, 1:], labels


def _parse_pickle(data: bytes, where: str, records: int) -> tuple[np.ndarray, np.ndarray]:
    """(planes (records, 3072) uint8, labels int64) of one pickled batch."""
    batch = _safe_unpickle(data, where)
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        raise DataError(f"{where} is not a CIFAR-10 batch: expected a dict with "
                        "b'data' and b'labels'.")
    images, labels = batch[b"data"], batch[b"labels"]
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8
            or images.shape != (records, IMAGE_BYTES)):
        got = (f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray)
               else type(images).__name__)
        raise DataError(f"{where} has b'data' of {got}; expected uint8 "
                        f"({records}, {IMAGE_BYTES}).")
    if (not isinstance(labels, list) or len(labels) != records
            or not all(type(v) is int and v >= 0 for v in labels)):
        got = f"{len(labels)} items" if isinstance(labels, list) else type(labels).__name__
        raise DataError(f"{where} has b'labels' of {got}; expected a list of "
                        f"{records} non-negative ints.")
    labels = np.asarray(labels, np.int64)
    _check_labels(labels, where)
    return images, labels


def _class_names(files: dict[str, bytes], fmt: str, where: str) -> tuple[str, ...]:
    """The names in batches.meta.txt / batches.meta, or the standard ones if absent."""
    if fmt.startswith("binary") and "batches.meta.txt" in files:
        names = [n.strip() for n in files["batches.meta.txt"].decode("utf-8", "replace")
                 .splitlines() if n.strip()]
    elif fmt.startswith("python") and "batches.meta" in files:
        meta = _safe_unpickle(files["batches.meta"], _describe(where, fmt, "batches.meta"))
        raw = meta.get(b"label_names") if isinstance(meta, dict) else None
        names = ([n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                  for n in raw] if isinstance(raw, list) else [])
    else:
        return CLASS_NAMES
    if len(names) != NUM_CLASSES:
        raise DataError(f"The class-name file in {where} lists {len(names)} names; "
                        f"CIFAR-10 has {NUM_CLASSES}.")
    return tuple(names)


# --- Pickles ----------------------------------------------------------------------

def _latin1_encode(text, encoding="latin1"):
    """codecs.encode as protocol-2 pickles use it for bytes (Python 3 writes
    ``b"..."`` as ``_codecs.encode("...", "latin1")``); no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"codecs.encode with {encoding!r}")
    return codecs.encode(text, "latin1")


# Every global a genuine CIFAR-10 pickle references (checked with pickletools on
# the pickles make_cifar10.py writes, protocol 2 under Python 3, and on the
# authors' Python 2 files, which name numpy.core instead of numpy._core): numpy's
# array reconstruction and, for bytes, codecs.encode. Anything else is refused.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("codecs", "encode"): _latin1_encode,
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


def _safe_unpickle(data: bytes, where: str):
    try:
        return _CifarUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ...
        raise DataError(f"{where} is not a readable CIFAR-10 pickle: "
                        f"{type(e).__name__}: {_first_line(e)}.") from e


# --- tensorflow-datasets ----------------------------------------------------------

def _load_tfds() -> Cifar10:
    """cifar10 from tensorflow-datasets, downloading it once if needed."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"tensorflow-datasets is not installed; {_NO_DOWNLOAD_HINT}.") from e
    try:
        prepared = tfds.builder("cifar10").is_prepared()
    except Exception as e:
        raise DataError(f"tensorflow-datasets cannot provide cifar10 ({_first_line(e)}); "
                        f"{_NO_DOWNLOAD_HINT}.") from e
    if not prepared and not _reachable(*_TFDS_HOST):
        raise DataError(f"CIFAR-10 is not in tensorflow-datasets' folder and cannot be "
                        f"downloaded ({_TFDS_HOST[0]} is unreachable); {_NO_DOWNLOAD_HINT}.")
    try:
        train, test = tfds.as_numpy(tfds.load("cifar10", split=["train", "test"],
                                              batch_size=-1, as_supervised=True))
    except Exception as e:  # network, disk, or tfds' own bugs: all mean "use a local copy"
        raise DataError(f"tensorflow-datasets could not provide cifar10 "
                        f"({type(e).__name__}: {_first_line(e)}); {_NO_DOWNLOAD_HINT}.") from e
    return Cifar10(train=Split(np.asarray(train[0], np.uint8), np.asarray(train[1], np.int64)),
                   test=Split(np.asarray(test[0], np.uint8), np.asarray(test[1], np.int64)),
                   class_names=CLASS_NAMES, source="tensorflow-datasets cifar10")


def _reachable(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` (or the configured HTTPS proxy) opens.

    Runs in a daemon thread joined with a timeout, since name resolution ignores
    socket timeouts and can hang on its own.
    """
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


# --- Synthetic data ---------------------------------------------------------------

def synthetic(num_train: int, num_test: int, seed: int = 0) -> Cifar10:
    """Random CIFAR-shaped data that a network can learn, deterministic in ``seed``.

    Each class has its own prototype: a colour plus a smooth 4x4-cell pattern.
    An image is its class's prototype plus independent pixel noise (std 50), so
    the data is easy on purpose (a nearest-class-mean rule on the pixels gets it
    all right): a few training steps visibly lower the loss, which is what smoke
    runs need. Classes are balanced (to within one image) and shuffled.

    Raises:
        UserError: negative sizes.
    """
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
                            f"({n * IMAGE_BYTES / 1e9:,.1f} GB).") from None
        for start in range(0, n, 4096):  # in chunks: float noise for 50,000 is 600 MB
            y = labels[start:start + 4096]
            noise = rng.standard_normal((len(y), 32, 32, 3), np.float32) * 50.0
            images[start:start + 4096] = np.clip(prototypes[y] + noise, 0, 255).round()
        return Split(images, labels)

    return Cifar10(train=make(num_train, train_rng), test=make(num_test, test_rng),
                   class_names=CLASS_NAMES, source=f"synthetic (seed {seed})")


# --- Validation split ---------------------------------------------------------------

def fixed_subset(split: Split, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``size`` images and labels of ``split``, drawn without replacement, fixed by ``seed``.

    In the split's order. The study's curve points and layer statistics use these
    (so does the reference trainer's comparison), the same for every run.
    """
    size = min(size, len(split))
    index = np.sort(np.random.default_rng(seed).permutation(len(split))[:size])
    return split.images[index], split.labels[index]


def holdout(split: Split, n: int, seed: int) -> tuple[Split, Split]:
    """Holds ``n`` random examples out of ``split``, deterministically in ``seed``.

    Returns:
        (the rest, the held-out ``n``), each in the original order.

    Raises:
        UserError: ``n`` is negative or larger than the split.
    """
    if not 0 <= n <= len(split):
        raise UserError(f"Cannot hold out {n} of {len(split)} training examples.")
    held = np.zeros(len(split), bool)
    held[np.random.default_rng(seed).permutation(len(split))[:n]] = True
    return (Split(split.images[~held], split.labels[~held]),
            Split(split.images[held], split.labels[held]))
