"""The training run's Keras callbacks: RunWriter writes the run directory at each epoch's
end; the others time epochs, show progress and stop a diverging run."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import logging

from keras_resnet_cifar import progress, run_files, signals
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import resume_state


class EpochTimer(keras.callbacks.Callback):
    """Adds epoch_time_s, images_per_sec (training phase only) and load_average (how far
    other work slowed the timings: 2 cores at load 4 run each job at about half speed)."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images_per_epoch = images_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_time = None

    def on_test_begin(self, logs=None):  # the per-epoch evaluation starts
        if getattr(self, "_start", None) is not None and self._train_time is None:
            self._train_time = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        train_time = self._train_time or elapsed
        logs["epoch_time_s"] = elapsed
        logs["train_time_s"] = train_time  # for the epoch's line (not in the history)
        logs["images_per_sec"] = self.images_per_epoch / max(train_time, 1e-9)
        logs["load_average"] = os.getloadavg()[0]


class ProgressLine(keras.callbacks.Callback):
    """Progress inside an epoch (step, running loss and accuracy, then the evaluation's
    batches) on a progress.Line, erased before each epoch's summary line."""

    def __init__(self, total_epochs: int, steps: int, eval_batches: int,
                 eval_set: str = "test", *, every: float = 60.0, tty_every: float = 0.5,
                 stream=None):
        super().__init__()
        self.total_epochs, self.steps, self.eval_batches = total_epochs, steps, eval_batches
        self.eval_set = eval_set
        self.line = progress.Line(every, tty_every, stream)
        self._epoch = None
        self._start = 0.0

    def _show(self, text: str) -> None:
        where = ("final evaluation" if self._epoch is None
                 else f"epoch {self._epoch + 1}/{self.total_epochs}")
        self.line.show(f"{where}: {text}, {time.monotonic() - self._start:.0f} s")

    def clear(self, *_, **__) -> None:
        """Erases the line: at each epoch's and evaluation's end, and on a stop."""
        self.line.clear()

    on_test_end = on_epoch_end = clear

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = self.line.restart()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        figures = "".join(f", {name} {scalar(logs[key]):.4f}"
                          for key, name in (("cross_entropy", "cross-entropy"),
                                            ("accuracy", "accuracy")) if key in logs)
        self._show(f"step {batch + 1}/{self.steps} "
                   f"({100 * (batch + 1) / max(self.steps, 1):.0f}%){figures}")

    def on_test_begin(self, logs=None):
        if self._epoch is None:  # the final evaluation, outside fit
            self._start = self.line.restart()

    def on_test_batch_end(self, batch, logs=None):
        self._show(f"evaluating on the {self.eval_set} set, batch {batch + 1}/{self.eval_batches}")

    def on_train_end(self, logs=None):
        self.clear()
        self._epoch = None


def scalar(value) -> float:
    """A log value as a float (a 1-element vector under vector_logs)."""
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Ends training with a UserError when a batch's loss is NaN or infinite (Keras'
    TerminateOnNaN stops quietly, exit status 0); raised before the epoch's end, so the
    run directory keeps the last finite epoch and nothing NaN becomes "best"."""

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = scalar((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            rate = scalar(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            raise UserError(
                f"the training loss became {loss} in epoch {self.epoch + 1} (learning rate "
                f"{rate:g}); training stopped, the run directory keeps the epochs before it. "
                "Train with a lower learning_rate in another run directory.",
                argument="learning_rate")


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, SIGINT/SIGTERM deferred while it writes. TensorFlow's summary
    context flushes before it restores the default writer: a stop inside that flush left the
    writer set, deleted in the interpreter's shutdown ("ImportError: sys.meta_path is None")."""

    def __init__(self, stop: signals.StopSignals, **kwargs):
        super().__init__(**kwargs)
        self.stop = stop

    def set_model(self, model):
        with self.stop.deferred():
            super().set_model(model)

    def on_train_batch_end(self, batch, logs=None):  # the first one writes the graph
        with self.stop.deferred():
            super().on_train_batch_end(batch, logs)

    def on_test_end(self, logs=None):
        with self.stop.deferred():
            super().on_test_end(logs)

    def on_epoch_end(self, epoch, logs=None):
        with self.stop.deferred():
            super().on_epoch_end(epoch, logs)


class RunWriter(keras.callbacks.Callback):
    """Writes at every epoch's end, SIGINT/SIGTERM deferred: the resume state (the truth),
    history, then (chief only) last.keras and, on a better val_accuracy, best.keras/json."""

    def __init__(self, workdir: Path, eval_set: str, total_epochs: int, chief: bool,
                 state: resume_state.State | None, stop: signals.StopSignals):
        super().__init__()
        self.workdir, self.chief, self.stop = workdir, chief, stop
        self.eval_set, self.total_epochs = eval_set, total_epochs
        self.rows = list(state.history) if state else []
        self.best = state.best if state else None
        self._noted = False  # the BatchNorm note is printed once per session

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1,
               **{k: scalar(logs[k]) for k in run_files.HISTORY_FIELDS[1:] if k in logs}}
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        value = row.get("val_accuracy")
        improved = value is not None and math.isfinite(value) and (
            self.best is None or value > self.best["value"])
        if improved:
            self.best = {"epoch": epoch + 1, "metric": "val_accuracy", "value": value}
        with self.stop.deferred():
            resume_state.save_state(
                self.workdir, self.model,
                resume_state.State(epoch=epoch + 1, history=self.rows, best=self.best))
            run_files.write_history(self.workdir, self.eval_set, self.rows)
            if self.chief:
                run_files.save_model(self.model, self.workdir, run_files.LAST)
                if improved:
                    run_files.save_model(self.model, self.workdir, run_files.BEST)
                    run_files.write_best(self.workdir, self.best)
        evaluated = (f"{self.eval_set} cross-entropy {row['val_cross_entropy']:.4f}, "
                     f"{self.eval_set} accuracy {row['val_accuracy']:.4f}, "
                     if "val_accuracy" in row else "")
        logging.info("epoch %d/%d: cross-entropy %.4f, accuracy %.4f, %slr %.4g, %s",
                     epoch + 1, self.total_epochs, row.get("cross_entropy", math.nan),
                     row.get("accuracy", math.nan), evaluated,
                     row.get("learning_rate", math.nan), epoch_timing(row, logs))
        note = lagging_batch_norm_note(row, self.eval_set)
        if note and not self._noted:
            self._noted = True
            logging.info("%s", note)


def epoch_timing(row: dict[str, Any], logs: dict[str, Any]) -> str:
    """"27.1 s: training 12.9 s at 389 img/s, evaluation 14.2 s"."""
    total, rate = row.get("epoch_time_s", math.nan), row.get("images_per_sec", math.nan)
    train = logs.get("train_time_s")
    if train is None or total - train < 0.05:  # no evaluation in the epoch
        return f"{total:.1f} s training at {rate:.0f} img/s"
    return (f"{total:.1f} s: training {train:.1f} s at {rate:.0f} img/s, evaluation "
            f"{total - train:.1f} s")


def lagging_batch_norm_note(row: dict[str, Any], eval_set: str) -> str | None:
    """A note for an epoch whose evaluation loss is far above its training loss (68.9 against
    2.3 after 20 steps is BatchNorm's moving averages lagging the weights, not a bug)."""
    train, held = row.get("cross_entropy"), row.get("val_cross_entropy")
    if train is None or held is None or not (math.isfinite(train) and math.isfinite(held)
                                              and held >= max(5.0, 3.0 * train)):
        return None
    return (f"note: {eval_set} cross-entropy {held:.1f} against {train:.2f} in training: "
            "BatchNormalization's moving averages lag the weights early in a run "
            "(docs/training.md).")
