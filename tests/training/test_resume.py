"""Crash-safe, exact resume of a training run, on tiny synthetic runs.

The multi-process tests kill or signal a real `train` process; they are marked slow.
The others train in this process (a few seconds each). The rules each module
enforces are tested beside it: test_lock.py, test_resume_state.py, ../test_run_files.py.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet_cifar.training import lock, loop, resume_state
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "flags" / "smoke.cfg"
# 3 epochs of 3 steps, deterministic: the shape of every run here.
RUN = (f"--flagfile={SMOKE}", "--epochs=3", "--steps_per_epoch=3", "--deterministic",
       "--seed=3", "--progress=0")
TIMEOUT_S = 300


# Installed as sitecustomize (on PYTHONPATH) in a training process: the save of the
# resume state of epoch PAUSE_EPOCH stops after its temporary file is complete and
# before the rename that commits it (os.replace), writes that file's path to READY
# and waits to be killed: the instant where a non-atomic save would lose the run.
_PAUSE_IN_SAVE = textwrap.dedent("""
    import json, os, time

    _replace = os.replace
    READY, EPOCH = os.environ["KRC_TEST_PAUSE_READY"], int(os.environ["KRC_TEST_PAUSE_EPOCH"])

    def _pausing_replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == "state.npz" and not os.path.exists(READY):
            import numpy as np

            with np.load(src) as saved:
                epoch = json.loads(str(saved["meta"]))["epoch"]
            if epoch == EPOCH:
                with open(READY, "w") as f:
                    f.write(os.fspath(src))
                time.sleep(600)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _pausing_replace
""")


def _pause_in_save(tmp_path, epoch):
    """The environment of a training process that pauses in the save of ``epoch``'s state.

    Returns (the environment, the file that appears once the save has paused).
    """
    hook, ready = tmp_path / "hook", tmp_path / "paused"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_PAUSE_IN_SAVE)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook),
                                                        os.environ.get("PYTHONPATH")])),
            "KRC_TEST_PAUSE_READY": str(ready), "KRC_TEST_PAUSE_EPOCH": str(epoch)}, ready


def _popen(run_dir, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_resnet_cifar.train", *RUN, f"--model_dir={run_dir}",
         *extra], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)


def _train_cli(run_dir, *extra, env=None):
    proc = _popen(run_dir, *extra, env=env)
    _, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, err


def _wait_for(condition, proc, what):
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {what}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _history(run_dir):
    """history.json without the timings and the machine's load (which differ from run to run)."""
    rows = run_files.read_history(run_dir)
    return [{k: v for k, v in r.items()
             if k not in ("epoch_time_s", "images_per_sec", "load_average")} for r in rows]


def _weights(model_path):
    model = keras.saving.load_model(model_path)
    return [w.numpy() for w in model.weights]


def _assert_same_run(run_dir, reference):
    """Bit-identical final weights, history (minus timings) and test figures."""
    for a, b in zip(_weights(run_dir / run_files.MODEL), _weights(reference / run_files.MODEL),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert _history(run_dir) == _history(reference)
    ours, theirs = run_files.read_metrics(run_dir), run_files.read_metrics(reference)
    assert ours["epochs_completed"] == theirs["epochs_completed"] == 3
    assert (ours["test_loss"], ours["test_accuracy"], ours["best"]) == \
        (theirs["test_loss"], theirs["test_accuracy"], theirs["best"])


def _temporaries(run_dir):
    return [p for p in run_dir.rglob(".*") if p.name != run_files.LOCK]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, by the CLI."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    code, err = _train_cli(run_dir)
    assert code == 0, err[-3000:]
    return run_dir


# --- Crash safety, by killing a real process -------------------------------------------

@pytest.mark.slow
def test_killed_inside_the_resume_state_write_resumes_bit_identical(reference, tmp_path):
    run_dir = tmp_path / "run"
    env, ready = _pause_in_save(tmp_path, epoch=2)
    proc = _popen(run_dir, env=env)
    _wait_for(ready.exists, proc, "the save of epoch 2 paused")
    # The state's temporary file is complete, not yet renamed: kill it there.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    temporary = Path(ready.read_text())
    assert temporary.exists() and temporary.parent == run_dir / run_files.BACKUP
    assert resume_state.read_state_epoch(run_dir) == 1  # the previous state is intact
    assert not (run_dir / run_files.METRICS).exists()

    code, err = _train_cli(run_dir)
    assert code == 0, err[-3000:]
    assert "resuming from epoch 1 of 3" in err
    assert "epoch 1/3:" not in err and "epoch 2/3:" in err
    assert not _temporaries(run_dir)  # the killed save's temporary was removed
    _assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_killed_at_random_instants_resumes_bit_identical(reference, tmp_path):
    run_dir = tmp_path / "run"
    seed = int(os.environ.get("KRC_TEST_SEED", time.time_ns() % 2**32))
    print(f"KRC_TEST_SEED={seed}")  # shown on failure: rerun with it to repeat the instants
    rng = random.Random(seed)
    for attempt in range(2):  # two kills, each at a random instant after the first epoch
        proc = _popen(run_dir)
        _wait_for(lambda: run_files.read_history(run_dir) or False, proc, "an epoch")
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break  # finished before this kill: the check below still applies
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, err = _train_cli(run_dir)
    assert code == 0, err[-3000:]
    _assert_same_run(run_dir, reference)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_run_resumes(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = _popen(run_dir)
    _wait_for(lambda: run_files.read_history(run_dir) or False, proc, "an epoch")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT_S)
    if "epoch 3/3:" in err:
        pytest.skip("the run ended before SIGTERM arrived")
    assert proc.returncode == 143  # 128 + SIGTERM, as a shell reports it
    assert "Traceback" not in err
    assert "SIGTERM: training stopped" in err and "run the same command to resume" in err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert not (run_dir / run_files.METRICS).exists()

    code, err = _train_cli(run_dir)
    assert code == 0, err[-3000:]
    assert "resuming from epoch" in err
    _assert_same_run(run_dir, reference)


# --- One process, one recipe -----------------------------------------------------------


@pytest.mark.slow
def test_a_second_process_on_the_same_run_directory_is_refused(reference, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with lock.lock(run_dir):
        code, err = _train_cli(run_dir)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {run_dir} is in use by another "
                                                   "training process")
    assert list(run_dir.iterdir()) == [run_dir / run_files.LOCK]


def test_fewer_epochs_are_refused_and_more_extend_the_run(tmp_path, tiny):
    config = dataclasses.replace(tiny, epochs=1)
    loop.train_and_evaluate(config, tmp_path, verbose=0)
    longer = dataclasses.replace(tiny, epochs=2)
    metrics = loop.train_and_evaluate(longer, tmp_path, verbose=0)
    assert metrics["epochs_completed"] == 2
    assert [r["epoch"] for r in run_files.read_history(tmp_path)] == [1, 2]
    assert run_files.read_config(tmp_path)["epochs"] == 2
    [extension] = run_files.read_extensions(tmp_path)
    assert (extension["epochs"], extension["extended_to"], extension["epochs_completed"]) == \
        (1, 2, 1)
    with pytest.raises(UserError, match="holds a run of 2 epochs, not epochs=1"):
        loop.train_and_evaluate(config, tmp_path, verbose=0)
    # A finished run is not retrained.
    assert loop.train_and_evaluate(longer, tmp_path, verbose=0) == metrics


# --- Resume state: unreadable, missing, written atomically -------------------------------


def test_full_disk_is_one_clear_error_and_the_same_command_resumes(tmp_path, monkeypatch, tiny):
    run_dir = tmp_path / "run"
    saves = []
    real_savez = np.savez

    def savez_on_a_full_disk(file, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the state of epoch 2
            file.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(file, *args, **kwargs)

    monkeypatch.setattr(resume_state.np, "savez", savez_on_a_full_disk)
    with pytest.raises(UserError, match=r"^no space left on the device holding .*backup "
                                        r"\(writing state.npz\)"):
        loop.train_and_evaluate(tiny, run_dir, verbose=0)
    assert resume_state.read_state_epoch(run_dir) == 1  # the previous state is intact
    assert not _temporaries(run_dir)
    monkeypatch.setattr(resume_state.np, "savez", real_savez)
    metrics = loop.train_and_evaluate(tiny, run_dir, verbose=0)
    assert metrics["epochs_completed"] == 3


# --- Issue 29: links planted in a run directory -----------------------------------------


def test_train_refuses_a_planted_checkpoints_link_in_one_line(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / run_files.CHECKPOINTS).symlink_to(outside)
    code, err = _train_cli(run)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: {run / run_files.CHECKPOINTS} is a symbolic link, where a folder belongs: "
        "refused (nothing is written through a link or into a special file)."]
    assert list(outside.iterdir()) == [] and sorted(p.name for p in run.iterdir()) == [
        run_files.CHECKPOINTS]


# --- Issue 29: a resume state that cannot lie --------------------------------------------


