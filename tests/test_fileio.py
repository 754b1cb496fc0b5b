"""fileio: atomic writes, the one process-exclusive lock, and making a folder clearly."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
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
    with pytest.raises(UserError, match=re.escape(f"{blocker}/run")):
        fileio.make_dir(blocker / "run")
    with pytest.raises(UserError, match="model_dir x") as e:  # named as the caller says
        fileio.make_dir(blocker / "run", what="model_dir x")
    assert str(blocker) not in str(e.value)


# --- Issue 29: planted links and special files ------------------------------------------

def test_open_regular_refuses_links_and_special_files_and_reads_regular_ones(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    with fileio.open_regular(secret) as f:
        assert f.read() == b"outside"
    with fileio.open_regular(tmp_path / "link", follow_links=True) as f:  # a path one typed
        assert f.read() == b"outside"
    for name, what in (("link", "is a symbolic link"), ("fifo", "is a FIFO, not a regular"),
                       ("dir", "not a regular file")):
        with pytest.raises(UserError, match=what):
            fileio.open_regular(tmp_path / name)
    with pytest.raises(UserError, match="is a FIFO"):
        fileio.open_regular(tmp_path / "fifo", follow_links=True)
    with pytest.raises(UserError, match="is a character device"):
        fileio.open_regular("/dev/zero", follow_links=True)
    with pytest.raises(UserError, match="holds 7 bytes, more than the 6"):
        fileio.read_bytes(secret, max_bytes=6)
    with pytest.raises(FileNotFoundError):
        fileio.open_regular(tmp_path / "absent")
    fileio.check_not_link(tmp_path / "absent")
    fileio.check_not_link(tmp_path / "dir", directory=True)
    with pytest.raises(UserError, match="is a symbolic link, where a regular file belongs"):
        fileio.check_not_link(tmp_path / "link")
    with pytest.raises(UserError, match="is a directory, where a regular file belongs"):
        fileio.check_not_link(tmp_path / "dir")


def test_no_reader_blocks_on_a_fifo_or_reads_an_endless_device(tmp_path):
    # Issue 29: a FIFO given as an image to predict or serving_client hung forever; an
    # endless device given as a checkpoint, or as a run's config.json, was read into
    # gigabytes. Run in a fresh interpreter with a timeout: a reader that blocks fails the
    # test instead of hanging it.
    os.mkfifo(tmp_path / "image.png")
    os.mkfifo(tmp_path / "batch.npy")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "model_card.json")
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        from keras_resnet_cifar.data import images
        from keras_resnet_cifar.deploy import contract
        from keras_resnet_cifar.errors import UserError
        from keras_resnet_cifar.models import torch_checkpoint
        from keras_resnet_cifar import run_files
        folder = {str(tmp_path)!r}
        for load in (lambda: images.load_file(folder + "/image.png"),
                     lambda: images.load_file(folder + "/batch.npy"),
                     lambda: run_files.read_config(folder + "/run"),
                     lambda: contract.read_card(folder + "/model.tflite"),
                     lambda: torch_checkpoint.load("/dev/zero"),
                     lambda: torch_checkpoint.load(folder + "/image.png")):
            try:
                load()
                print("accepted")
            except UserError as e:
                print("refused:", e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("refused: ") for line in lines), lines
    for line, what in zip(lines, ("image.png is a FIFO", "batch.npy is a FIFO",
                                  "config.json is a symbolic link", "model_card.json is a FIFO",
                                  "/dev/zero is a character device", "image.png is a FIFO")):
        assert what in line, line


def test_a_lock_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path):
    # Issue 29: train, resume and export overwrote the target of a .lock symlink with a pid.
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (tmp_path / ".lock").symlink_to(target)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link: refused"):
        with fileio.exclusive_lock(tmp_path / ".lock", lambda pid: "busy"):
            pass
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(UserError, match="is a FIFO, not a lock file"):
        with fileio.exclusive_lock(tmp_path / "fifo.lock", lambda pid: "busy"):
            pass
    assert target.read_text() == "precious"
