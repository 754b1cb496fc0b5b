"""fileio: atomic writes, the one process-exclusive lock, and making a folder clearly."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar import fileio
from keras_resnet_cifar.errors import UserError


def test_atomic_writes_keep_the_old_file_and_clean_up_on_any_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    fileio.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert json.loads(target.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [target]
    # A temporary left by a killed writer is recognised and removed; nothing else is.
    for name in (".a.k3j_9xq2.tmp.json", ".last.abcdefgh.tmp.keras", ".1.abcd1234.tmp"):
        (tmp_path / name).write_text("")
    (tmp_path / ".hidden").write_text("")
    removed = fileio.remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".1.abcd1234.tmp", ".a.k3j_9xq2.tmp.json",
                                               ".last.abcdefgh.tmp.keras"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "a.json"]
    # ENOSPC, even wrapped by a library, is one clear UserError.
    def full(self, text):
        raise RuntimeError("write failed") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match="no space left on the device holding"):
        fileio.write_json(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert list(tmp_path.glob(".a.*")) == []



def _busy(pid):
    return f"taken by {pid}"


def test_exclusive_lock_refuses_a_second_holder_naming_it_and_a_crash_frees_it(tmp_path):
    lock = tmp_path / ".lock"
    with fileio.exclusive_lock(lock, _busy) as held:
        assert held
        with pytest.raises(UserError, match=f"^taken by {os.getpid()}$"):
            with fileio.exclusive_lock(lock, _busy):
                pass
    with fileio.exclusive_lock(lock, _busy):  # released at the end of the block
        pass
    # Another process holds it, then dies holding it: the kernel frees it.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from keras_resnet_cifar import fileio\n"
        f"with fileio.exclusive_lock({str(lock)!r}, str):\n"
        "    print('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"^taken by {holder.pid}$"):
            with fileio.exclusive_lock(lock, _busy):
                pass
    finally:
        holder.kill()
        holder.wait()
    with fileio.exclusive_lock(lock, _busy):
        pass
    assert lock.exists()  # never removed: removing it would let two holders in


def test_exclusive_lock_of_a_holder_that_wrote_no_pid(tmp_path):
    import fcntl

    lock = tmp_path / ".lock"
    with open(lock, "a") as other:  # as an older writer, or another tool, holds it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="^taken by None$"):
            with fileio.exclusive_lock(lock, _busy):
                pass


def test_exclusive_lock_without_flock_says_it_holds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "fcntl", None)
    with fileio.exclusive_lock(tmp_path / ".lock", _busy) as held:
        assert held is False
    assert not (tmp_path / ".lock").exists()


def test_make_dir_makes_parents_accepts_an_existing_one_and_fails_in_one_sentence(tmp_path):
    made = fileio.make_dir(tmp_path / "a" / "b")
    assert made == tmp_path / "a" / "b" and made.is_dir()
    assert fileio.make_dir(made) == made  # exists: fine
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=rf"^Cannot create {blocker}/run: Not a directory\.$"):
        fileio.make_dir(blocker / "run")
    with pytest.raises(UserError, match=r"^Cannot create --model_dir x: Not a directory\.$"):
        fileio.make_dir(blocker / "run", what="--model_dir x")
