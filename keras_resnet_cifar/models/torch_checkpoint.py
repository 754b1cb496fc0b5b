"""Reads PyTorch checkpoints (torch.save files) into NumPy arrays, without torch.

Both formats: zip (torch >= 1.6: <name>/data.pkl plus one file per storage under <name>/data/) and
legacy (the reference's 2018 checkpoints: pickles of magic number, protocol, system info, the object
and the storage keys, then each storage's bytes after its int64 element count). The unpickler
resolves only the names torch's format uses. convert/write_npz: the reference ResNets' checkpoints
(github.com/akamaster/pytorch_resnet_cifar10, BSD 2-clause, (c) 2018 Yerlan Idelbayev) as float32
arrays under PyTorch's state-dict names and layouts, and the .npz the project reads.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError

# torch's storage classes and the dtypes of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
# The reference's ResNet-1202 holds 19.4 M float32 parameters (78 MB). A file, its storages
# (declared sizes) and their tensors are refused beyond these, before they are read or made.
MAX_CHECKPOINT_BYTES = 256 << 20
MAX_PICKLE_BYTES = 16 << 20
_LEGACY_PROTOCOL = 1001


class _StorageType:  # stands in for torch.FloatStorage etc.: only its dtype matters
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:  # its elements are filled in when its bytes are read (legacy: last)
    def __init__(self, dtype: np.dtype, data: np.ndarray | None = None):
        self.dtype, self.data = dtype, data


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *unused) -> "_Tensor":
    if not (isinstance(storage, _Storage) and _is_count(offset)
            and isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
            and len(size) == len(stride) and all(map(_is_count, size))
            and all(map(_is_count, stride))):
        raise UserError(f"A tensor has a malformed layout (offset {offset!r:.40}, shape "
                        f"{size!r:.60}, strides {stride!r:.60}): a corrupt checkpoint.")
    return _Tensor(storage, offset, tuple(size), tuple(stride))


class _Tensor:  # a tensor before its storage's bytes are known
    def __init__(self, storage: _Storage, offset: int, shape: tuple, strides: tuple):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise UserError("A tensor's storage is missing from the checkpoint.")
        if 0 in self.shape:
            return np.empty(self.shape, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides))
        if self.offset < 0 or min(self.strides, default=0) < 0 or last >= data.size:
            raise UserError("A tensor reaches past the end of its storage: a corrupt checkpoint.")
        # A tensor of a state dict never has more elements than its storage; one that
        # repeats them (stride 0) could be made gigabytes from a few bytes.
        elements = int(np.prod(self.shape, dtype=object))
        if elements > data.size:
            raise UserError(f"A tensor of shape {self.shape} repeats its storage of {data.size:,} "
                            f"elements (strides {self.strides}): refused before it is made.")
        if not self.shape:
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.strides), writeable=False)
        return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


# The only globals a state-dict checkpoint needs. Anything else is refused.
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, load_storage: Callable[[tuple], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UserError(f"The checkpoint refers to {module}.{name}, which a checkpoint of "
                        "tensors does not need: refusing to load it.")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UserError(f"Unknown persistent reference {pid!r} in the checkpoint.")
        return self._load_storage(pid)


def _to_numpy(obj):  # every tensor in dicts, lists and tuples by its array
    if isinstance(obj, _Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _to_numpy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _storage_type(pid: tuple) -> _StorageType:
    storage_type = pid[1]
    if not isinstance(storage_type, _StorageType):
        raise UserError(f"Unsupported storage type {storage_type!r} in the checkpoint.")
    return storage_type


def _load_zip(archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise UserError("The zip file is not a torch checkpoint (no single data.pkl).")
    prefix = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    # Declared sizes, checked before any member is read (zipfile reads no further).
    declared = sum(m.file_size for m in archive.infolist())
    if declared > MAX_CHECKPOINT_BYTES:
        raise UserError(f"Its members announce {declared:,} bytes, more than the "
                        f"{MAX_CHECKPOINT_BYTES:,} of any CIFAR ResNet checkpoint: refused "
                        "before reading.")
    if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
        raise UserError(f"Its {pickles[0]} announces {archive.getinfo(pickles[0]).file_size:,} "
                        f"bytes, more than {MAX_PICKLE_BYTES:,}: refused before reading.")
    if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
        raise UserError("The checkpoint was saved big-endian, which is not supported.")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, _, key, _location, _numel = pid[:5]
        if key not in storages:
            dtype = _storage_type(pid).dtype
            name = f"{prefix}data/{key}"
            if name not in names:
                raise UserError(f"The checkpoint lacks the storage {name}.")
            storages[key] = _Storage(dtype, np.frombuffer(archive.read(name), dtype))
        return storages[key]

    return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _load_legacy(f: BinaryIO) -> Any:
    def header(expected, what):
        value = _Unpickler(f, _no_storage).load()
        if value != expected:
            raise UserError(f"Not a torch checkpoint (its {what} is {value!r}).")

    header(_LEGACY_MAGIC, "magic number")
    header(_LEGACY_PROTOCOL, "protocol version")
    _Unpickler(f, _no_storage).load()  # system info: endianness, type sizes
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        key, view = pid[2], pid[5] if len(pid) > 5 else None
        if view is not None:
            raise UserError("The checkpoint uses storage views (torch < 0.4 style), "
                            "which are not supported.")
        if key not in storages:
            storages[key] = _Storage(_storage_type(pid).dtype)
        return storages[key]

    obj = _Unpickler(f, load_storage).load()
    keys = _Unpickler(f, _no_storage).load()
    if not isinstance(keys, list):
        raise UserError("Not a torch checkpoint (no list of storage keys).")
    read = 0
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise UserError(f"The checkpoint lists a storage {key!r} no tensor uses.")
        (count,) = struct.unpack("<q", _read_exactly(f, 8))
        read += max(count, 0) * storage.dtype.itemsize
        if count < 0 or read > MAX_CHECKPOINT_BYTES:
            raise UserError(f"A storage announces {count:,} elements, beyond the "
                            f"{MAX_CHECKPOINT_BYTES:,} bytes of any CIFAR ResNet "
                            "checkpoint: refused before reading.")
        data = _read_exactly(f, count * storage.dtype.itemsize)
        storage.data = np.frombuffer(data, storage.dtype)
    return obj


def _no_storage(pid: tuple) -> _Storage:
    raise UserError("Unexpected tensor in a torch checkpoint's header.")


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise UserError("The checkpoint ends early: a truncated file.")
    return data


def load(path: str | os.PathLike) -> Any:
    """The object a torch.save file holds, with NumPy arrays for its tensors."""
    try:
        # One regular file (a FIFO or device never ends), of a bounded size, opened once.
        with fileio.open_regular(path, follow_links=True,
                                 max_bytes=MAX_CHECKPOINT_BYTES + MAX_PICKLE_BYTES) as f:
            if zipfile.is_zipfile(f):
                f.seek(0)
                with zipfile.ZipFile(f) as archive:
                    obj = _load_zip(archive)
            else:
                f.seek(0)
                obj = _load_legacy(f)
            return _to_numpy(obj)  # recursive: a nesting thousands deep is RecursionError
    except FileNotFoundError:
        raise UserError(f"No checkpoint at {path}.") from None
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, struct.error, zipfile.BadZipFile,
            OSError, KeyError, IndexError, TypeError, AttributeError, RecursionError,
            MemoryError) as e:
        raise UserError(f"{path} is not a readable torch checkpoint ({e}).") from None


def state_dict(checkpoint: Any, *, drop: tuple[str, ...] = ("num_batches_tracked",)
               ) -> dict[str, np.ndarray]:
    """The float state dict of a loaded checkpoint, bare or under "state_dict" (the
    reference's), keys without DataParallel's "module.", those ending in `drop` left out."""
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in checkpoint.items()):
        raise UserError("The checkpoint holds no state dict of tensors (names to tensors).")
    out = {}
    for key, value in checkpoint.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.endswith(drop):
            continue
        if value.dtype.kind != "f":
            raise UserError(f"The checkpoint's {key!r:.80} holds {value.dtype} values, not "
                            "float weights.")
        out[key] = value
    return out


def convert(checkpoint: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a .th checkpoint, floating-point arrays as float32."""
    loaded = load(checkpoint)
    try:
        state = state_dict(loaded)
    except UserError as e:
        raise UserError(f"{checkpoint}: {e}") from None
    return {k: v.astype(np.float32) for k, v in state.items()}  # state_dict: floats only


def write_npz(state: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes `state` as an uncompressed .npz without pickled objects, atomically: what
    np.savez(file, **state) writes, for any key (savez takes a key named allow_pickle, or
    file, as its own argument, and such an array was lost)."""
    try:
        with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f, \
                zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, value in state.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    except OSError as e:
        raise UserError(f"Cannot write {path} ({e.strerror or e}).") from None
