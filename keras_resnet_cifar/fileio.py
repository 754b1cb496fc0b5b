"""Files and folders: atomic writes (temporary path, fsync, rename), locks, directories.

Nothing here is ever half-written: :func:`atomic_path` and its writers replace a
file only once the new content is complete. :func:`exclusive_lock` is the one
process-exclusive lock (a run directory's, an export's); :func:`make_dir` makes a
folder or fails in one clear sentence.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from keras_resnet_cifar.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no flock
    fcntl = None

# The temporaries of atomic_path: ".<name>.<8 random characters>.tmp[<suffix>]".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it over ``path`` on success.

    The temporary lives in the same directory (same filesystem), so the final
    ``os.replace`` is atomic: a reader sees the old file or the new one, never a
    partial one, and the old one stays until the new one is complete. The new
    content is flushed to disk (fsync) before the rename and the directory after
    it, so that a power cut cannot leave a renamed but empty file either. On any
    exception the temporary is removed and ``path`` is untouched; a temporary left
    by a killed process is removed by :func:`remove_temporaries`. The suffix is
    kept (Keras checks ``.keras``), the name is hidden.

    Raises:
        UserError: the disk (or quota) is full; the message names the file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.",
                                        suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        yield tmp
        _fsync_tree(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException as e:
        if tmp is not None:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        if is_no_space(e):
            raise no_space_error(path) from None
        raise


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a full disk or quota.

    Libraries wrap the ``OSError`` (h5py, zipfile, Keras' saving), so the chain
    of causes and the message are searched too.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def no_space_error(path: str | os.PathLike) -> UserError:
    """The one-line error for a full disk while writing ``path``."""
    return UserError(f"no space left on the device holding {Path(path).parent} (writing "
                     f"{Path(path).name}); nothing was half-written: free some space and "
                     "run the same command again.")


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Removes the temporaries that interrupted :func:`atomic_path` writes left in ``directory``.

    Only call this while no other process writes there (a training run holds its
    run directory's lock). Returns what was removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if _TEMPORARY.match(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. a directory that cannot be opened on this platform
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # a filesystem that cannot fsync this kind of file is fine
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root))
    else:
        _fsync(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically writes ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically writes ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    """The JSON at ``path``, or None when there is no file.

    Raises:
        UserError: the file exists but is not readable JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({e}).") from None


def make_dir(path: str | os.PathLike, *, what: str | None = None) -> Path:
    """Creates the folder ``path`` and its parents, unless it exists.

    Args:
        path: the folder.
        what: how the error names it (default: the path), e.g. ``--model_dir runs/x``.

    Returns:
        ``path``, as a Path.

    Raises:
        UserError: it cannot be made (a file in the way, no permission, a full disk).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create {what or path}: {e.strerror or e}.") from None
    return path


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike,
                   busy: Callable[[int | None], str]) -> Iterator[bool]:
    """Holds an exclusive lock on the file ``path`` for the block; refuses at once if taken.

    The lock is an ``flock``, which the kernel releases when its process ends,
    however it ends: a crash never leaves it stuck, and there is no stale lock
    file to clean up. The holder writes its process id into the file, so that a
    refusal can name it.

    Args:
        path: the lock file (created if missing; never removed).
        busy: the refusal's message, given the holder's process id (None when unknown).

    Yields:
        True while the lock is held; False on a platform without ``flock`` (no lock).

    Raises:
        UserError: another process holds the lock (message ``busy(pid)``).
        OSError: the lock file cannot be opened.
    """
    if fcntl is None:
        yield False
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise UserError(busy(int(holder) if holder.isdigit() else None)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # releases the flock
