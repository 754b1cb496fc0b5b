"""The training entry point, run as a user runs it: the CLI on synthetic data."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet_cifar import config as config_lib

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "flags" / "smoke.cfg"


def run_train(*args, check=True, **kwargs):
    cmd = [sys.executable, "-m", "keras_resnet_cifar.train", f"--flagfile={SMOKE}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and r.returncode:
        raise AssertionError(f"{cmd} failed:\n{r.stderr[-3000:]}")
    return r


def history(run_dir):
    return json.loads((run_dir / "history.json").read_text())["epochs"]


def test_default_learning_rate_schedule_drops_after_epochs_80_and_120():
    cfg = config_lib.TrainConfig()
    lrs = [config_lib.learning_rate_at(e, cfg) for e in range(200)]
    assert lrs[0] == lrs[79] == 0.1
    assert lrs[80] == lrs[119] == pytest.approx(0.01)
    assert lrs[120] == lrs[199] == pytest.approx(0.001)
    warm = config_lib.TrainConfig(warmup_epochs=1)
    assert config_lib.learning_rate_at(0, warm) == 0.01
    assert config_lib.learning_rate_at(1, warm) == 0.1


def test_config_defaults_and_round_trip():
    cfg = config_lib.TrainConfig(model="plain56")
    assert (cfg.epochs, cfg.batch_size, cfg.momentum, cfg.weight_decay) == (200, 128, 0.9, 1e-4)
    assert cfg.lr_boundaries == (80, 120)
    again = config_lib.TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize("bad", [dict(model="resnet21"), dict(epochs=0), dict(shortcut="C"),
                                 dict(lr_boundaries=(120, 80)), dict(dataset="mnist"),
                                 dict(momentum=1.5)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        config_lib.TrainConfig(**bad)


def test_smoke_run_lowers_loss_and_writes_a_complete_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    r = run_train(f"--model_dir={run_dir}", "--epochs=3", "--steps_per_epoch=8")
    # Output is a pipe, not a terminal: exactly one plain line per epoch (epochs this
    # short end before the first progress line is due), and no Keras lines.
    assert r.stdout == ""
    assert not any(c in r.stderr for c in ("\x1b[", "\r", "\b"))
    assert [line.split(":")[0] for line in r.stderr.splitlines()
            if line.startswith("epoch ")] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    for name in ("config.json", "history.csv", "history.json", "metrics.json", "model.keras",
                 "checkpoints/last.keras", "checkpoints/best.keras", "backup/state.npz"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    rows = history(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert [r["learning_rate"] for r in rows] == pytest.approx([0.1, 0.01, 0.01])
    assert all(r["epoch_time_s"] > 0 and r["images_per_sec"] > 0 for r in rows)
    # loss = cross-entropy + the L2 term (positive), cross_entropy alone.
    assert all(r["loss"] > r["cross_entropy"] > 0 for r in rows)
    csv_lines = (run_dir / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith(
        "epoch,loss,cross_entropy,accuracy,val_loss,val_cross_entropy,val_accuracy,learning_rate")
    assert len(csv_lines) == 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_set"] == "test" and metrics["best"]["chosen_on"] == "test"
    assert metrics["params_trainable"] == 75_290  # resnet8
    assert metrics["epochs_completed"] == 3
    # The last epoch evaluated this model on the same (capped) test images: reused.
    assert metrics["test_images"] == 2 * 64  # --eval_steps=2 of smoke.cfg
    assert (metrics["test_loss"], metrics["test_accuracy"]) == \
        (rows[-1]["val_cross_entropy"], rows[-1]["val_accuracy"])
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model"] == "resnet8" and saved["epochs"] == 3

    # A finished run is not silently retrained.
    again = run_train(f"--model_dir={run_dir}", "--epochs=3", "--steps_per_epoch=8")
    assert "already holds a finished" in again.stderr
    assert len(history(run_dir)) == 3


def test_validation_split_selects_on_validation(tmp_path):
    run_dir = tmp_path / "val"
    run_train(f"--model_dir={run_dir}", "--epochs=1", "--validation_split=128")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_set"] == "validation"
    assert metrics["best"]["chosen_on"] == "validation"
    assert metrics["test_images"] == 2 * 64  # evaluated apart, still capped by --eval_steps
    assert json.loads((run_dir / "history.json").read_text())["eval_set"] == "validation"


def _kernels(run_dir):
    from keras_resnet_cifar.training import optimizer  # noqa: F401  (registers ReferenceSGD)

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    return {w.path: w.numpy() for w in model.trainable_weights if w.path.endswith("kernel")}


def _relative_difference(a, b):
    return max(float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k])) for k in b)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_trains_as_one_device(tmp_path):
    """2 replicas x 32 images with synchronised BN take the steps one device takes on 64.

    Measured: 8e-4 apart (float noise of another reduction order), while one device
    on batches of 32 (what a replica alone would see) ends 4e-2 away.
    """
    runs = {name: tmp_path / name for name in ("mirrored", "single", "half_batch")}
    run_train(f"--model_dir={runs['mirrored']}", "--epochs=1", "--distribute=mirrored",
              "--cpu_devices=2")
    run_train(f"--model_dir={runs['single']}", "--epochs=1", "--distribute=none")
    run_train(f"--model_dir={runs['half_batch']}", "--epochs=1", "--distribute=none",
              "--batch_size=32")
    assert json.loads((runs["mirrored"] / "metrics.json").read_text())["replicas"] == 2
    mirrored, single = _kernels(runs["mirrored"]), _kernels(runs["single"])
    assert _relative_difference(mirrored, single) < 5e-3
    assert _relative_difference(_kernels(runs["half_batch"]), single) > 1e-2


@pytest.mark.parametrize("flag,message", [
    ("--model=resnet21", "6n+2"),
    ("--epochs=-1", "--epochs must be positive"),
    ("--dataset=mnist", "--dataset must be one of"),
    ("--data_dir=/nonexistent/cifar", "/nonexistent/cifar"),
    ("--lr_decay=-1", "--lr_decay must be in (0, 1]"),
    ("--learning_rate=inf", "--learning_rate must be a finite number > 0"),
    ("--validation_split=512", "--validation_split=512 leaves no training images"),
    # Issue 16, item 3: tracebacks, and a run directory left behind with the bad config.
    ("--batch_size=99999999999999999999999", "--batch_size must be at most"),
    ("--steps_per_epoch=99999999999999999999999", "--steps_per_epoch must be at most"),
    ("--eval_steps=99999999999999999999999", "--eval_steps must be at most"),
    ("--synthetic_train_size=99999999999999999999999", "--synthetic_train_size must be at"),
    ("--synthetic_train_size=4611686018427387904", "Cannot hold 4,611,686,018,427,387,904"),
    ("--seed=-1", "--seed must be in [0, 4294967295], got -1"),
    ("--seed=99999999999999999999", "--seed must be in [0, 4294967295]"),
    ("--batch_size=1000000000", "--batch_size=1000000000 is larger than the 512 training"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, flag, message):
    r = run_train(f"--model_dir={tmp_path / 'x'}", "--dataset=cifar10"
                  if "data_dir" in flag else "--epochs=1", flag, check=False)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "x").exists()  # a refused run leaves no run directory


def test_unwritable_model_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_train(f"--model_dir={blocker / 'run'}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Cannot create --model_dir" in r.stderr


def test_a_run_directory_of_another_model_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"model": "plain20"}))
    r = run_train(f"--model_dir={run_dir}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "holds a run with other training flags" in r.stderr
    assert "--model=resnet8 (the run has plain20)" in r.stderr
    assert json.loads((run_dir / "config.json").read_text()) == {"model": "plain20"}


_REPLICA_SCRIPT = r'''
import sys, numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet_cifar import config
from keras_resnet_cifar.data import datasets, pipeline
from keras_resnet_cifar.training import distribution, loop
cfg = config.TrainConfig(model="resnet8", dataset="synthetic", batch_size=32)
strategy = distribution.make_strategy("mirrored")
with strategy.scope():
    model = loop.build_and_compile(cfg, strategy.num_replicas_in_sync)
data = datasets.synthetic(128, 32, seed=0)
model.fit(pipeline.train_dataset(data.train, 32, seed=0), epochs=1, verbose=0)
var = model.get_layer("stage2_block1_bn1").moving_mean
copies = [v.numpy() for v in strategy.experimental_local_results(var.value)]
print(len(copies), float(np.abs(copies[0] - copies[1]).max()),
      float(np.abs(copies[0]).max()))
'''


def test_replicas_keep_identical_batchnorm_statistics():
    r = subprocess.run([sys.executable, "-c", _REPLICA_SCRIPT], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    replicas, difference, magnitude = r.stdout.split()
    assert int(replicas) == 2
    assert float(magnitude) > 0  # the statistics did move
    assert float(difference) == 0.0


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw`` (carriage returns and erase-to-end applied)."""
    shown = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        text, col = [], 0
        for part in re.split(r"(\r|\x1b\[K)", line):
            if part == "\r":
                col = 0
            elif part == "\x1b[K":
                del text[col:]
            else:
                text[col:col + len(part)] = part
                col += len(part)
        shown.append("".join(text))
    return shown


def test_progress_on_a_terminal_leaves_one_clean_line_per_epoch(tmp_path):
    """In a terminal the progress line is rewritten in place and erased before each
    epoch's summary, which therefore starts its own line."""
    import pty

    main, child = pty.openpty()
    cmd = [sys.executable, "-m", "keras_resnet_cifar.train", f"--flagfile={SMOKE}",
           f"--model_dir={tmp_path / 'run'}", "--epochs=2", "--steps_per_epoch=30",
           "--synthetic_train_size=2048"]
    proc = subprocess.Popen(cmd, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait() == 0
    raw = b"".join(chunks).decode(errors="replace")
    assert "\repoch 1/2: step" in raw  # progress was shown, in place
    screen = [line for line in _screen(raw) if line.strip()]
    summaries = [line for line in screen if re.match(r"epoch \d/2: ", line)]
    assert [line.split(":")[0] for line in summaries] == ["epoch 1/2", "epoch 2/2"]
    assert all(line.split(": ", 1)[1].startswith("cross-entropy") for line in summaries)
    assert not any("step " in line or "evaluating" in line for line in screen), screen


def test_progress_line_when_piped_prints_full_lines_at_its_interval():
    import io

    from keras_resnet_cifar.training import callbacks

    out = io.StringIO()
    progress = callbacks.ProgressLine(3, 4, 2, "test", every=0.0, stream=out)
    progress.on_epoch_begin(0)
    for step in range(4):
        progress.on_train_batch_end(step, {"cross_entropy": 2.0, "accuracy": np.float32(0.25)})
    progress.on_test_begin()
    progress.on_test_batch_end(0)
    progress.on_test_end()
    progress.on_epoch_end(0, {})
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert [line.rsplit(",", 1)[0] for line in lines] == [
        "epoch 1/3: step 1/4 (25%), cross-entropy 2.0000, accuracy 0.2500",
        "epoch 1/3: step 2/4 (50%), cross-entropy 2.0000, accuracy 0.2500",
        "epoch 1/3: step 3/4 (75%), cross-entropy 2.0000, accuracy 0.2500",
        "epoch 1/3: step 4/4 (100%), cross-entropy 2.0000, accuracy 0.2500",
        "epoch 1/3: evaluating on the test set, batch 1/2"]
    quiet = io.StringIO()
    slow = callbacks.ProgressLine(3, 4, 2, every=3600.0, stream=quiet)
    slow.on_epoch_begin(0)
    for step in range(4):
        slow.on_train_batch_end(step, {})
    assert quiet.getvalue() == ""  # an epoch shorter than the interval: nothing but its summary


def test_a_lagging_batch_norm_gets_a_note():
    from keras_resnet_cifar.training import callbacks

    note = callbacks.lagging_batch_norm_note(
        {"cross_entropy": 2.3, "val_cross_entropy": 68.9}, "test")
    assert note.startswith("note: the test cross-entropy (68.9) is far above the training "
                           "one (2.30)") and "BatchNormalization's moving averages" in note
    assert callbacks.lagging_batch_norm_note(
        {"cross_entropy": 0.5, "val_cross_entropy": 0.9}, "test") is None
