"""Files written whole or not at all, read only as regular files (no link, FIFO or device),
folders made or refused in one sentence, and the one process-exclusive lock."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from keras_resnet_cifar.errors import UserError, first_line

try:
    import fcntl
except ImportError:  # not POSIX: no flock
    fcntl = None

# The temporaries of atomic_path: ".<name>.<8 random characters>.tmp[<suffix>]".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yields a hidden temporary path beside `path` (same suffix: Keras checks .keras), renamed
    over `path` on success: os.replace in one folder is atomic. The content is fsynced before
    the rename and the folder after it (no renamed but empty file after a power cut); on any
    exception the temporary goes and `path` is untouched."""
    path = Path(path)
    tmp = None
    if not is_dir and path.is_dir() and not path.is_symlink():
        raise UserError(f"{path} is a directory, where the file it names is written: "
                        "remove or rename it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.",
                                        suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give what open() would
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
            raise UserError(f"no space left on the device holding {path.parent} (writing "
                            f"{path.name}); nothing was half-written: free some space and run "
                            "the same command again.") from None
        raise


def is_no_space(error: BaseException) -> bool:
    """A full disk or quota? h5py, zipfile, Keras wrap the OSError: causes and messages count."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Removes (and returns) killed atomic_path writes' temporaries: only while no other
    process writes in `directory` (a training run holds its run directory's lock)."""
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


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# A run's or an export's JSON files are kilobytes; a history of thousands of epochs, megabytes.
MAX_JSON_BYTES = 16 << 20


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, *, follow_links: bool = False,
                 max_bytes: int | None = None) -> BinaryIO:
    """Opens a regular file someone may have planted; no link followed (unless `follow_links`:
    a path the user typed); a FIFO or device refused without blocking (O_NONBLOCK, then fstat
    of the same descriptor: nothing swapped in between). Absence stays FileNotFoundError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link: refused (a file here is read only "
                            "as itself, never through a link).") from None
        if e.errno in (errno.ENXIO, errno.EISDIR):  # a socket; a directory on some systems
            raise UserError(f"{path} is not a regular file: refused.") from None
        raise UserError(f"Cannot read {path}: {e.strerror or e}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is {_kind(info.st_mode)}, not a regular file: refused "
                            "(it is never read, so it cannot block or run on forever).")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UserError(f"{path} holds {info.st_size:,} bytes, more than the "
                            f"{max_bytes:,} it may: refused before reading.")
        if fcntl is not None:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, *, max_bytes: int, follow_links: bool = False) -> bytes:
    """The regular file's content, refused beyond `max_bytes` (also if it grows meanwhile)."""
    with open_regular(path, follow_links=follow_links, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"{path} grew beyond {max_bytes:,} bytes while it was read: refused.")
    return data


def check_regular(path: str | os.PathLike, *, follow_links: bool = False) -> None:
    """open_regular's refusals, for libraries that open the file themselves (numpy's memmap)."""
    open_regular(path, follow_links=follow_links).close()


def check_not_link(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Refuses a link or anything but a regular file (or folder) at a fixed name a tool writes
    to (checkpoints/, .lock): a planted link would send the writes elsewhere. Absent is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise UserError(f"Cannot inspect {path}: {e.strerror or e}.") from None
    wanted = stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
    if not wanted:
        raise UserError(f"{path} is {_kind(mode)}, where a "
                        f"{'folder' if directory else 'regular file'} belongs: refused "
                        "(nothing is written through a link or into a special file).")


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES):
    """The JSON at `path` (read as open_regular reads), or None when there is no file."""
    try:
        text = read_bytes(path, max_bytes=max_bytes).decode()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({e}).") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path} is not readable JSON ({first_line(e)}).") from None


def make_dir(path: str | os.PathLike, *, what: str | None = None) -> Path:
    """The error names the folder as `what`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create {what or path}: {e.strerror or e}.") from None
    return path


def check_can_make_dir(path: str | os.PathLike, *, what: str | None = None) -> None:
    """Refuses, making nothing, a folder filled at the end (a report after hours of training)
    that could not be made: a file in the way, an ancestor not writable."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.is_dir():
            if os.access(folder, os.W_OK | os.X_OK):
                return
            raise UserError(f"Cannot create {what or path}: {folder} is not writable.")
        if os.path.lexists(folder):
            raise UserError(f"Cannot create {what or path}: {folder} is not a folder.")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, busy: Callable[[int | None], str]) -> Iterator[bool]:
    """Holds an exclusive flock on `path` for the block, refused at once if taken (busy(pid or
    None) says why); the kernel releases it however the process ends: no stale lock. The
    holder writes its pid there. Yields False (no lock) on a platform without flock."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link planted as the lock: its target is never written
            raise UserError(f"{path} is a symbolic link: refused (a lock file is written "
                            "only as itself, never through a link).") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path} is {_kind(os.fstat(fd).st_mode)}, not a lock file: refused.")
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
