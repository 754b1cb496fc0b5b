"""callbacks: a diverging run stops with one clear error.

ProgressLine on a terminal is tested through the command, in tests/test_train.py.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from keras_resnet_cifar import config as config_lib
from keras_resnet_cifar import run_files
from keras_resnet_cifar.errors import UserError
from keras_resnet_cifar.training import callbacks, loop, resume_state


def test_a_loss_that_becomes_nan_stops_the_run_with_a_clear_error(tmp_path, monkeypatch, tiny):
    run_dir = tmp_path / "run"
    # A rate that diverges at once is beyond the flag's bound (issue 29): lifted here.
    monkeypatch.setattr(config_lib, "MAX_LEARNING_RATE", float("inf"))
    diverging = dataclasses.replace(tiny, learning_rate=1e30, lr_boundaries=(100,))
    with pytest.raises(UserError, match=r"the training loss became (nan|inf) in epoch 1 "
                                        r"\(learning rate 1e\+30\)"):
        loop.train_and_evaluate(diverging, run_dir, verbose=0)
    assert not (run_dir / run_files.METRICS).exists()
    assert not (run_dir / run_files.BEST).exists() and not (run_dir / run_files.BEST_JSON).exists()
    assert resume_state.read_state_epoch(run_dir) is None


def test_progress_line_when_piped_prints_full_lines_at_its_interval():
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
    note = callbacks.lagging_batch_norm_note(
        {"cross_entropy": 2.3, "val_cross_entropy": 68.9}, "test")
    assert note.startswith("note: test cross-entropy 68.9 against 2.30 in training: "
                           "BatchNormalization's moving averages lag")
    assert len(note) <= 150 and "docs/training.md" in note  # one line; the rest is there
    assert callbacks.lagging_batch_norm_note(
        {"cross_entropy": 0.5, "val_cross_entropy": 0.9}, "test") is None


def test_the_epoch_line_says_what_its_seconds_and_rate_count():
    """The rate is the training phase's; the seconds are the epoch's, evaluation included."""
    row = {"epoch_time_s": 27.1, "images_per_sec": 389.2}
    assert callbacks.epoch_timing(row, {"train_time_s": 12.9}) == \
        "27.1 s: training 12.9 s at 389 img/s, evaluation 14.2 s"
    assert callbacks.epoch_timing(row, {"train_time_s": 27.1}) == \
        "27.1 s training at 389 img/s"



def test_a_stop_inside_a_tensorboard_write_waits_for_the_write_to_end(monkeypatch, tmp_path):
    """TF's summary context flushes, then restores the default writer: a stop raised inside
    the flush left the writer set, to be deleted in the interpreter's shutdown (1 stop in
    5-8 printed "ImportError: sys.meta_path is None"). The stop now waits for the hook."""
    import os
    import signal

    import keras
    import tensorflow as tf
    from tensorflow.python.ops import summary_ops_v2

    from keras_resnet_cifar import signals

    writer, ended = tf.summary.create_file_writer(str(tmp_path)), []
    writer.flush = lambda: os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the flush

    def write(self, *args):  # a hook that writes a summary, as Keras' do
        with writer.as_default():
            ended.append(True)

    for hook, args in (("set_model", (None,)), ("on_train_batch_end", (0, {})),
                       ("on_test_end", ({},)), ("on_epoch_end", (0, {}))):
        monkeypatch.setattr(keras.callbacks.TensorBoard, hook, write)
        with signals.StopSignals() as stop:
            board = callbacks.TensorBoard(stop, log_dir=str(tmp_path))
            with pytest.raises(signals.Interrupted):
                getattr(board, hook)(*args)
        assert ended.pop() and summary_ops_v2._summary_state.writer is None, hook
