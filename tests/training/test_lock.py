"""lock: one process per run directory, one recipe per run, trained work never started over."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import lock, loop

REPO = Path(__file__).resolve().parents[2]


def test_lock_refuses_a_second_holder_and_is_freed_by_a_crash(tmp_path):
    with lock.lock(tmp_path):
        with pytest.raises(UserError, match=rf"in use by another training process \(pid "
                                            rf"{os.getpid()}\)"):
            with lock.lock(tmp_path):
                pass
    # A process that dies holding the lock does not leave it stuck.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from keras_resnet_cifar.training import lock\n"
        f"with lock.lock({str(tmp_path)!r}):\n"
        "    print('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        with lock.lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with lock.lock(tmp_path):
        pass


def test_changed_recipe_is_refused_with_every_difference(tmp_path, tiny):
    run_files.write_config(tmp_path, tiny)
    before = (tmp_path / run_files.CONFIG).read_text()
    changed = config_lib.TrainConfig(**{**json.loads(tiny.to_json()), "lr_boundaries": (2,),
                                        "learning_rate": 0.05, "seed": 4, "data_dir": "/x",
                                        "jit_compile": True})
    with pytest.raises(UserError) as error:
        lock.plan(tmp_path, changed)
    message = str(error.value)
    assert error.value.argument == ("learning_rate", "lr_boundaries", "seed")  # each field
    assert "learning_rate=0.05 (the run has 0.1)" in message
    assert "seed=4 (the run has 3)" in message
    assert "lr_boundaries=2 (the run has 1)" in message
    assert "data_dir" not in message and "jit_compile" not in message  # execution only
    assert (tmp_path / run_files.CONFIG).read_text() == before
    # A run older than a field counts as having its default.
    saved = json.loads(before)
    del saved["warmup_epochs"]
    assert lock.recipe_differences(saved, tiny) == {}


def test_unreadable_or_missing_resume_state_is_never_silently_restarted(
        tmp_path, tiny, one_epoch_run):
    run_dir = one_epoch_run
    longer = dataclasses.replace(tiny, epochs=2)
    state = run_dir / run_files.STATE
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(UserError, match=f"the resume state {state} is unreadable"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    state.unlink()
    with pytest.raises(UserError, match=r"has 1 trained epoch\(s\) but no resume state"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    assert [r["epoch"] for r in run_files.read_history(run_dir)] == [1]


def test_trained_epochs_without_state_or_history_are_never_retrained_from_scratch(
        tmp_path, tiny, one_epoch_run):
    # Issue 16, item 1: with backup/state.npz and both history files gone, the run used
    # to retrain from epoch 0 and overwrite checkpoints/last.keras without a word.
    run_dir = one_epoch_run
    longer = dataclasses.replace(tiny, epochs=2)
    for name in (run_files.STATE, run_files.HISTORY_JSON, run_files.HISTORY_CSV):
        (run_dir / name).unlink()
    last = (run_dir / run_files.LAST).read_bytes()
    with pytest.raises(UserError, match=r"shows that epochs were trained \(checkpoints/"
                                        r"last\.keras, .*resume state .* is missing"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    assert (run_dir / run_files.LAST).read_bytes() == last
    # TensorBoard's epoch summaries alone still show it.
    for name in (run_files.LAST, run_files.BEST, run_files.BEST_JSON, run_files.MODEL,
                 run_files.METRICS):
        (run_dir / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="tensorboard/ epoch summaries"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)


def test_a_run_killed_before_its_first_epoch_ended_starts_afresh(tmp_path, tiny):
    # What the check above must not refuse: config.json, and the event file that
    # TensorBoard opens when training starts, without any epoch summary.
    run_files.write_config(tmp_path, tiny)
    events = tmp_path / run_files.TENSORBOARD / "train"
    events.mkdir(parents=True)
    (events / "events.out.tfevents.1.host").write_bytes(b"\0" * 64 + b"brain.Event:2")
    assert lock.trained_epoch_evidence(tmp_path) == []
    assert lock.plan(tmp_path, tiny).state_epoch == 0


def test_a_planted_checkpoints_link_or_lock_link_is_refused_before_any_write(tmp_path, tiny):
    # Issue 29: a `checkpoints` symlink made train write best.keras and best.json outside
    # the run folder; a `.lock` symlink had its target overwritten with a pid.
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name, target, message in (
            (run_files.CHECKPOINTS, outside, "checkpoints is a symbolic link, where a folder "
                                          "belongs"),
            (run_files.LOCK, victim, r"\.lock is a symbolic link, where a regular file belongs"),
            (run_files.BACKUP, victim, "backup is a symbolic link")):
        run = tmp_path / f"run-{name.strip('.')}"
        run.mkdir()
        (run / name).symlink_to(target)
        for check in (lock.ensure_unlocked, lambda d: lock.lock(d).__enter__()):
            with pytest.raises(UserError, match=message):
                check(run)
    (tmp_path / "run-fifo").mkdir()
    os.mkfifo(tmp_path / "run-fifo" / run_files.CONFIG)
    with pytest.raises(UserError, match="config.json is a FIFO"):
        lock.ensure_unlocked(tmp_path / "run-fifo")
    assert list(outside.iterdir()) == [] and victim.read_text() == "precious"
