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


def history_file(run_dir):
    return json.loads((run_dir / "history.json").read_text())


def history(run_dir):
    return history_file(run_dir)["epochs"]


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
    # Provenance: the code's commit (None outside a git checkout), the data path as the
    # user gave it (none for synthetic data), the load, the CPU and library versions.
    assert {"git_commit", "data_dir_given", "load_average_1min_at_end", "cpu", "tensorflow",
            "keras"} <= set(metrics)
    assert metrics["data_dir_given"] is None
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


def _scores(model_path, images, labels, batch_size):
    """(accuracy, mean cross-entropy) of a saved model, computed here from its logits
    (as training computes it: the probabilities of a wrecked net underflow)."""
    from keras_resnet_cifar.training import optimizer  # noqa: F401  (registers ReferenceSGD)

    model = keras.saving.load_model(model_path, compile=False)
    model = keras.Model(model.inputs, model.get_layer("logits").output)
    logits = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    cross_entropy = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]
    return float(np.mean(logits.argmax(axis=1) == labels)), float(cross_entropy.mean())


def test_best_checkpoint_is_the_epoch_with_the_best_val_accuracy(tmp_path):
    """checkpoints/best.keras holds the weights of the epoch with the highest val_accuracy
    on the validation split (--validation_split), which metrics.json and best.json name.

    Two warm-up epochs at 0.1 learn; then a learning rate of 50 wrecks the network, so
    the best epoch is not the last one and a best.keras that followed the last epoch
    (or any other) scores differently on the validation images it was chosen on. (A rate
    of 5 was once enough; on an AVX2-only CPU its third epoch still came out best, 19.5%
    against 18.8%, since these accuracies are near chance. At 50 the last epoch falls to
    10.9% there, its loss still finite.)
    """
    from keras_resnet_cifar.training import loop

    run_dir = tmp_path / "run"
    run_train(f"--model_dir={run_dir}", "--epochs=3", "--validation_split=128",
              "--warmup_epochs=2", "--warmup_learning_rate=0.1", "--learning_rate=50",
              "--lr_boundaries=100", "--deterministic")
    rows = history(run_dir)
    accuracies = [r["val_accuracy"] for r in rows]
    best = accuracies.index(max(accuracies))  # the first of equals: a tie is not better
    assert best != len(rows) - 1, f"the run did not degrade: {accuracies}"
    recorded = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert recorded == {"epoch": best + 1, "metric": "val_accuracy", "value": accuracies[best]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_set"] == "validation" == history_file(run_dir)["eval_set"]
    assert metrics["best"] == {**recorded, "chosen_on": "validation"}
    assert metrics["test_images"] == 2 * 64  # evaluated apart, still capped by --eval_steps

    # The images best was chosen on: the held-out validation split, cut at --eval_steps.
    config = config_lib.TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    _, validation, _ = loop.load_data(config)
    n = config.eval_steps * config.batch_size
    images, labels = validation.images[:n].astype(np.float32), validation.labels[:n]
    accuracy, cross_entropy = _scores(run_dir / "checkpoints" / "best.keras", images, labels,
                                      config.batch_size)
    assert accuracy == rows[best]["val_accuracy"]
    assert cross_entropy == pytest.approx(rows[best]["val_cross_entropy"], rel=1e-4)
    # The same measurement tells epochs apart: last.keras reproduces the last epoch.
    last = _scores(run_dir / "checkpoints" / "last.keras", images, labels, config.batch_size)
    assert last[1] == pytest.approx(rows[-1]["val_cross_entropy"], rel=1e-4)
    assert last[1] != pytest.approx(cross_entropy, rel=1e-2)


def test_learning_rate_changes_at_boundaries_with_steps_per_execution(tmp_path):
    """With --steps_per_execution=3 Keras calls back once per 3 steps: a boundary is
    applied from the first execution that starts at or after it (optimizer.StepSchedule).

    6 steps per epoch, boundaries after 1.5 steps (inside the first execution, steps
    0-2: applied from step 3) and after epoch 1 (an execution's start: applied there).
    """
    from keras_resnet_cifar.training import loop

    config = config_lib.TrainConfig(
        model="resnet8", dataset="synthetic", synthetic_train_size=512,
        synthetic_test_size=64, epochs=2, batch_size=32, steps_per_epoch=6, eval_steps=1,
        lr_boundaries=(0.25, 1), steps_per_execution=3)
    executions = []  # (optimizer steps done, the rate they used) after each execution
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: (
        executions.append((int(record.model.optimizer.iterations),
                           float(record.model.optimizer.learning_rate)))))
    loop.train_and_evaluate(config, tmp_path / "run", callbacks=[record], verbose=0)
    rates, done = [], 0
    for iterations, rate in executions:
        rates += [rate] * (iterations - done)
        done = iterations
    assert len(executions) == 4  # executions of 3 steps, none cut
    assert rates == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 6)
    assert [r["learning_rate"] for r in history(tmp_path / "run")] == \
        pytest.approx([0.01, 0.001])


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


def test_a_refusal_after_the_data_load_is_one_line_without_traceback(tmp_path):
    r = run_train(f"--model_dir={tmp_path / 'x'}", "--epochs=1", "--validation_split=512",
                  check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "leaves no training images" in last
    assert not (tmp_path / "x").exists()


def test_unwritable_model_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_train(f"--model_dir={blocker / 'run'}", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Cannot create the run directory" in r.stderr


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


@pytest.mark.slow
def test_ctrl_c_on_a_terminal_starts_its_own_line_and_is_no_error(tmp_path):
    """Ctrl-C in a terminal (a pseudo-terminal here): the progress line is erased before
    the stop is reported, and a stop asked for does not end in "error:"."""
    import pty
    import select
    import signal
    import time

    main, child = pty.openpty()
    cmd = [sys.executable, "-m", "keras_resnet_cifar.train", f"--flagfile={SMOKE}",
           f"--model_dir={tmp_path / 'run'}", "--epochs=3", "--steps_per_epoch=200",
           "--synthetic_train_size=4096"]
    proc = subprocess.Popen(cmd, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    chunks, sent, deadline = [], False, time.monotonic() + 300
    while time.monotonic() < deadline:
        if not select.select([main], [], [], 1.0)[0]:
            continue
        try:
            data = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
        if not sent and b": step " in b"".join(chunks):
            proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
            sent = True
    os.close(main)
    assert sent and proc.wait(timeout=60) == 130
    screen = [line for line in _screen(b"".join(chunks).decode(errors="replace"))
              if line.strip()]
    stopped = [line for line in screen if "training stopped" in line]
    assert len(stopped) == 1 and stopped[0].startswith("warning: "), screen
    assert screen[-1] == "stopped (Ctrl-C)"
    assert not any("error" in line for line in screen), screen


def test_the_bfloat16_hint_is_for_float32_runs_on_cpus_that_have_it(monkeypatch):
    from keras_resnet_cifar import environment, train

    monkeypatch.setattr(environment, "bfloat16_support", lambda: ["avx512_bf16", "amx_bf16"])
    hint = train.bfloat16_hint(config_lib.TrainConfig())
    assert hint.startswith("hint: this CPU computes bfloat16 natively (avx512_bf16, amx_bf16)")
    assert "--mixed_precision=mixed_bfloat16" in hint and "\n" not in hint
    assert train.bfloat16_hint(config_lib.TrainConfig(mixed_precision="mixed_bfloat16")) is None
    for found in ([], None):  # none, or unknown
        monkeypatch.setattr(environment, "bfloat16_support", lambda: found)
        assert train.bfloat16_hint(config_lib.TrainConfig()) is None


def test_a_short_run_says_each_fact_once(tmp_path):
    """The data's source, the test accuracy, the BatchNorm note and, on a CPU with
    bfloat16 (patched in), the bfloat16 hint: each once."""
    code = ("import runpy, sys\nfrom keras_resnet_cifar import environment\n"
            "environment.bfloat16_support = lambda: ['avx512_bf16']\n"
            f"sys.argv = ['train', '--flagfile={SMOKE}', '--model_dir={tmp_path / 'run'}']\n"
            "runpy.run_module('keras_resnet_cifar.train', run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert sum(line.startswith("hint: this CPU computes bfloat16") for line in lines) == 1
    finals = [line for line in lines if re.match(r"(resnet8: test|final) ", line)]
    assert len(finals) == 1, lines
    assert sum(line.startswith("data: ") for line in lines) == 1, lines
    final = finals[0]
    assert re.search(r"test accuracy [\d.]+ on 128 images, test loss [\d.]+ "
                     r"\(cross-entropy from the logits\)", final), final
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert all(re.search(r"\d s: training [\d.]+ s at \d+ img/s, evaluation [\d.]+ s$", e)
               for e in epochs), epochs


def test_a_mixed_bfloat16_run_starts_from_the_float32_weights_of_its_seed():
    """report --variant_runs pairs a precision variant with the study's run by seed: the pair
    must start from the same weights (float32 variables under the mixed policy)."""
    from keras_resnet_cifar.training.loop import build_and_compile

    weights = []
    try:
        for precision in ("float32", "mixed_bfloat16", "float32"):
            keras.utils.set_random_seed(3 if len(weights) == 2 else 0)
            model = build_and_compile(config_lib.TrainConfig(model="resnet8",
                                                             mixed_precision=precision))
            weights.append([np.asarray(v) for v in model.weights])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    same = [all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(weights[0], w))
            for w in weights[1:]]
    assert same == [True, False]  # the same seed in bfloat16, not another seed
