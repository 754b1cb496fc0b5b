"""Crash-safe, exact resume and the run directory's rules (rundir), on tiny synthetic runs.

The multi-process tests kill or signal a real `train` process; they are marked slow.
The others train in this process (a few seconds each) or touch rundir alone.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar.training import lock, loop, resume_state
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "flags" / "smoke.cfg"
# 3 epochs of 3 steps, deterministic: the shape of every run here.
RUN = (f"--flagfile={SMOKE}", "--epochs=3", "--steps_per_epoch=3", "--deterministic",
       "--seed=3", "--progress=0")
TIMEOUT_S = 300
# The same run, in this process.
CONFIG = config_lib.TrainConfig(model="resnet8", dataset="synthetic", synthetic_train_size=512,
                                synthetic_test_size=256, epochs=3, batch_size=64,
                                steps_per_epoch=3, eval_steps=2, lr_boundaries=(1,),
                                deterministic=True, seed=3)


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


def test_changed_recipe_is_refused_with_every_difference(tmp_path):
    run_files.write_config(tmp_path, CONFIG)
    before = (tmp_path / run_files.CONFIG).read_text()
    changed = config_lib.TrainConfig(**{**json.loads(CONFIG.to_json()), "lr_boundaries": (2,),
                                        "learning_rate": 0.05, "seed": 4, "data_dir": "/x",
                                        "jit_compile": True})
    with pytest.raises(UserError) as error:
        lock.plan(tmp_path, changed)
    message = str(error.value)
    assert "learning_rate=0.05 (the run has 0.1)" in message
    assert "seed=4 (the run has 3)" in message
    assert "lr_boundaries=2 (the run has 1)" in message
    assert "data_dir" not in message and "jit_compile" not in message  # execution only
    assert (tmp_path / run_files.CONFIG).read_text() == before
    # A run older than a field counts as having its default.
    saved = json.loads(before)
    del saved["warmup_epochs"]
    assert lock.recipe_differences(saved, CONFIG) == []


def test_fewer_epochs_are_refused_and_more_extend_the_run(tmp_path):
    config = dataclasses.replace(CONFIG, epochs=1)
    loop.train_and_evaluate(config, tmp_path, verbose=0)
    longer = dataclasses.replace(CONFIG, epochs=2)
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

def _one_epoch_run(tmp_path):
    run_dir = tmp_path / "run"
    loop.train_and_evaluate(dataclasses.replace(CONFIG, epochs=1), run_dir, verbose=0)
    return run_dir


def test_unreadable_or_missing_resume_state_is_never_silently_restarted(tmp_path):
    run_dir = _one_epoch_run(tmp_path)
    longer = dataclasses.replace(CONFIG, epochs=2)
    state = run_dir / run_files.STATE
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(UserError, match=f"the resume state {state} is unreadable"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    state.unlink()
    with pytest.raises(UserError, match=r"has 1 trained epoch\(s\) but no resume state"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    assert [r["epoch"] for r in run_files.read_history(run_dir)] == [1]


def test_trained_epochs_without_state_or_history_are_never_retrained_from_scratch(tmp_path):
    # Issue 16, item 1: with backup/state.npz and both history files gone, the run used
    # to retrain from epoch 0 and overwrite checkpoints/last.keras without a word.
    run_dir = _one_epoch_run(tmp_path)
    longer = dataclasses.replace(CONFIG, epochs=2)
    for name in (run_files.STATE, run_files.HISTORY_JSON, run_files.HISTORY_CSV):
        (run_dir / name).unlink()
    last = (run_dir / run_files.LAST).read_bytes()
    with pytest.raises(UserError, match=r"shows that epochs were trained \(checkpoints/"
                                        r"last\.keras, .*resume state .* is missing"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)
    assert (run_dir / run_files.LAST).read_bytes() == last
    # TensorBoard's epoch summaries alone still show it.
    for name in (run_files.LAST, run_files.BEST, run_files.BEST_JSON, run_files.MODEL, run_files.METRICS):
        (run_dir / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="tensorboard/ epoch summaries"):
        loop.train_and_evaluate(longer, run_dir, verbose=0)


def test_a_run_killed_before_its_first_epoch_ended_starts_afresh(tmp_path):
    # What the check above must not refuse: config.json, and the event file that
    # TensorBoard opens when training starts, without any epoch summary.
    run_files.write_config(tmp_path, CONFIG)
    events = tmp_path / run_files.TENSORBOARD / "train"
    events.mkdir(parents=True)
    (events / "events.out.tfevents.1.host").write_bytes(b"\0" * 64 + b"brain.Event:2")
    assert lock.trained_epoch_evidence(tmp_path) == []
    assert lock.plan(tmp_path, CONFIG).state_epoch == 0


def test_a_damaged_best_checkpoint_is_rebuilt_or_reported_on_resume(tmp_path, monkeypatch):
    # Issue 16, item 2: a truncated checkpoints/best.keras stayed corrupt after a resume.
    run_dir = _one_epoch_run(tmp_path)  # best epoch 1 = the resume state's epoch
    best = run_dir / run_files.BEST
    best.write_bytes(best.read_bytes()[:1000])
    assert run_files.is_damaged_model(run_dir, run_files.BEST)
    assert not run_files.is_damaged_model(run_dir, run_files.LAST)
    (run_dir / run_files.METRICS).unlink()  # killed after the last epoch's state
    loop.train_and_evaluate(dataclasses.replace(CONFIG, epochs=1), run_dir, verbose=0)
    assert not run_files.is_damaged_model(run_dir, run_files.BEST)
    keras.saving.load_model(best, compile=False)
    # A best epoch older than the state cannot be rebuilt: said, not hidden.
    best.write_bytes(best.read_bytes()[:1000])
    warnings = []
    monkeypatch.setattr(loop.logging, "warning", lambda *a: warnings.append(a[0] % a[1:]))
    model = keras.saving.load_model(run_dir / run_files.LAST)
    state = resume_state.State(epoch=2, history=run_files.read_history(run_dir),
                         best=run_files.read_best(run_dir))
    loop._repair(run_dir, model, state, CONFIG, chief=True)
    assert any("best.keras is damaged (truncated or corrupt) and cannot be rebuilt" in w
               for w in warnings)


@pytest.mark.parametrize("name,text", [
    (run_files.CONFIG, "[]"),
    (run_files.CONFIG, '{"epochs": "3"}'),
    (run_files.HISTORY_JSON, "[1]"),
    (run_files.HISTORY_JSON, '{"rows": []}'),
    (run_files.BEST_JSON, "7"),
])
def test_run_files_of_the_wrong_json_type_are_named_in_one_line(tmp_path, name, text):
    # Issue 16, item 4: these gave tracebacks (AttributeError, TypeError, KeyError).
    run_files.write_config(tmp_path, CONFIG)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
    readers = {run_files.CONFIG: run_files.read_config, run_files.HISTORY_JSON: run_files.read_history,
               run_files.BEST_JSON: run_files.read_best}
    with pytest.raises(UserError, match=f"{tmp_path / name} "):
        readers[name](tmp_path)
    if name != run_files.BEST_JSON:
        with pytest.raises(UserError, match=f"{tmp_path / name} "):
            lock.plan(tmp_path, CONFIG)


def test_full_disk_is_one_clear_error_and_the_same_command_resumes(tmp_path, monkeypatch):
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
        loop.train_and_evaluate(CONFIG, run_dir, verbose=0)
    assert resume_state.read_state_epoch(run_dir) == 1  # the previous state is intact
    assert not _temporaries(run_dir)
    monkeypatch.setattr(resume_state.np, "savez", real_savez)
    metrics = loop.train_and_evaluate(CONFIG, run_dir, verbose=0)
    assert metrics["epochs_completed"] == 3




def test_a_loss_that_becomes_nan_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    # A rate that diverges at once is beyond the flag's bound (issue 29): lifted here.
    monkeypatch.setattr(config_lib, "MAX_LEARNING_RATE", float("inf"))
    diverging = dataclasses.replace(CONFIG, learning_rate=1e30, lr_boundaries=(100,))
    with pytest.raises(UserError, match=r"the training loss became (nan|inf) in epoch 1 "
                                        r"\(learning rate 1e\+30\)"):
        loop.train_and_evaluate(diverging, run_dir, verbose=0)
    assert not (run_dir / run_files.METRICS).exists()
    assert not (run_dir / run_files.BEST).exists() and not (run_dir / run_files.BEST_JSON).exists()
    assert resume_state.read_state_epoch(run_dir) is None


# --- Issue 29: links planted in a run directory -----------------------------------------

def test_a_planted_checkpoints_link_or_lock_link_is_refused_before_any_write(tmp_path):
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


def test_small_files_are_never_copied_through_a_link(tmp_path):
    # Issue 29: a study run whose per_class.csv was a symlink had a system file copied
    # into the report folder meant for committing.
    run, dest = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    (run / run_files.CONFIG).write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("a system file")
    (run / run_files.PER_CLASS).symlink_to(secret)
    with pytest.raises(UserError, match="per_class.csv is a symbolic link"):
        run_files.copy_small_files(run, dest)
    assert not (dest / run_files.PER_CLASS).exists()
    (run / run_files.PER_CLASS).unlink()
    assert run_files.copy_small_files(run, dest) == [dest / run_files.CONFIG]


# --- Issue 29: a resume state that cannot lie --------------------------------------------

def _rewrite_state(run_dir, change_meta=None, change_arrays=None, compressed=False):
    """Rewrites backup/state.npz (a valid zip, CRCs and all) with its metadata or arrays
    changed: what someone who edits the file can write."""
    target = run_dir / run_files.STATE
    with np.load(target) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    if change_meta:
        meta = change_meta(meta)
    if change_arrays:
        change_arrays(arrays)
    save = np.savez_compressed if compressed else np.savez
    with open(target, "wb") as f:
        save(f, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)), **arrays)


def _rows(n):
    return [{"epoch": i, "loss": 1.0} for i in range(1, n + 1)]


def test_a_resume_state_that_lies_is_refused_in_one_line(tmp_path):
    # Issue 29: a CRC-valid state claiming epoch 99 of 3 was accepted ("resuming from epoch
    # 99 of 3") and the run written as finished; epoch 0 retrained a finished epoch
    # silently; malformed metadata ended in tracebacks.
    run_dir = _one_epoch_run(tmp_path)
    longer = dataclasses.replace(CONFIG, epochs=3)
    history_before = (run_dir / run_files.HISTORY_JSON).read_text()
    metrics_before = (run_dir / run_files.METRICS).read_text()
    deep = "[" * 100_000 + "]" * 100_000
    cases = [
        (lambda m: {**m, "epoch": 99, "history": _rows(99)},
         "claims 99 completed epochs of a run of 1"),  # config.json: 1 until it resumes
        (lambda m: {**m, "epoch": 0, "history": [], "best": None},
         "holds 0 epoch\\(s\\) whose rows differ from the 1 of"),
        (lambda m: {**m, "epoch": -1}, "has epoch=-1, not a count"),
        (lambda m: {**m, "epoch": "1"}, "has epoch='1', not a count"),
        (lambda m: {**m, "epoch": 1.0}, "has epoch=1.0, not a count"),
        (lambda m: {**m, "epoch": 2, "history": _rows(2)}, "claims 2 completed epochs of a "
                                                            "run of 1"),
        (lambda m: {**m, "history": [{"epoch": 1, "loss": 123.0}]},
         "holds 1 epoch\\(s\\) whose rows differ from the 1 of"),
        (lambda m: {**m, "history": [{"epoch": 1, "loss": "low"}]},
         "has a history row of epoch 1 with a bad field 'loss'"),
        (lambda m: {**m, "history": {"epoch": 1}}, "has no list of history rows"),
        (lambda m: {**m, "best": {"epoch": 7, "metric": "val_accuracy", "value": 0.5}},
         "has best="),
        (lambda m: {**m, "variables": "all"}, "has no list of \\[variable path, shape\\]"),
        (lambda m: {k: v for k, v in m.items() if k != "variables"}, "has no list of"),
        (lambda m: [m], "holds a JSON list as metadata"),
        (lambda m: deep, "is unreadable \\(RecursionError"),
    ]
    for change, message in cases:
        copy = tmp_path / "copy"
        shutil.copytree(run_dir, copy)
        _rewrite_state(copy, change_meta=change)
        with pytest.raises(UserError, match=f"the resume state {copy / run_files.STATE} {message}"):
            loop.train_and_evaluate(longer, copy, verbose=0)
        assert (copy / run_files.HISTORY_JSON).read_text() == history_before  # nothing trained
        assert (copy / run_files.METRICS).read_text() == metrics_before
        shutil.rmtree(copy)


def test_a_resume_state_whose_arrays_are_not_the_models_is_refused(tmp_path):
    run_dir = _one_epoch_run(tmp_path)
    longer = dataclasses.replace(CONFIG, epochs=2)

    def shape(arrays):
        arrays["v00000"] = arrays["v00000"][..., :1]

    def dtype(arrays):
        arrays["v00000"] = arrays["v00000"].astype(np.float64)

    def bomb(arrays):  # 64 MB of zeros, compressed to a few kilobytes on disk
        arrays["v00001"] = np.zeros(16 << 20, np.float32)

    def missing(arrays):
        del arrays["v00002"]

    for change, message in ((shape, r"holds float32 \(3, 3, 3, 1\) for"),
                            (dtype, "holds float64 .* for .*, which is float32"),
                            (bomb, "declares 67,108,992 bytes for"),
                            (missing, "is unreadable \\(KeyError")):
        copy = tmp_path / "copy"
        shutil.copytree(run_dir, copy)
        _rewrite_state(copy, change_arrays=change, compressed=True)
        assert (copy / run_files.STATE).stat().st_size < 2 << 20
        with pytest.raises(UserError, match=f"the resume state {copy / run_files.STATE} {message}"):
            loop.train_and_evaluate(longer, copy, verbose=0)
        assert [r["epoch"] for r in run_files.read_history(copy)] == [1]
        shutil.rmtree(copy)
