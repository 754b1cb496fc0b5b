"""Curve points: the segment's training error from Keras' running means, resumed without duplicates."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet_cifar.analysis import curve_points
from keras_resnet_cifar import run_files


def _model():
    """A small model with well-separated outputs (no near-ties whose argmax float noise
    could flip) and lr 0: the weights never change, so each batch's errors can be
    recomputed afterwards."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu",
                            kernel_initializer=keras.initializers.RandomNormal(0, 0.05, seed=0))(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax",
                                 kernel_initializer=keras.initializers.RandomNormal(0, 0.05, seed=1))(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                           keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")])
    return model


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (n, 32, 32, 3)).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64))


def test_point_steps():
    assert curve_points.point_steps(391, 4) == [97, 195, 293, 391]
    assert curve_points.point_steps(8, 4) == [2, 4, 6, 8]
    assert curve_points.point_steps(3, 5) == [1, 2, 3]  # never a step twice, never step 0


def test_segments_weigh_partial_batches_and_test_error_is_the_subsets(tmp_path):
    model = _model()
    x, y = _data()  # 40 images, batch 16: batches of 16, 16 and 8
    test_x, test_y = _data(24, seed=1)
    recorder = curve_points.CurveRecorder(tmp_path, test_x, test_y, points_per_epoch=2, batch_size=8)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model.fit(ds, epochs=1, verbose=0, shuffle=False, callbacks=[recorder])
    points = run_files.read_curve(tmp_path)["points"]
    assert [p["step"] for p in points] == [1, 3]

    # The truth, computed apart: each batch's errors.
    wrong = [np.argmax(model.predict(x[i:i + 16], verbose=0), axis=1) != y[i:i + 16]
             for i in (0, 16, 32)]
    assert 0 < np.concatenate(wrong).mean() < 1  # a test that can tell segments apart
    second = np.concatenate(wrong[1:])
    assert points[0]["train_error"] == pytest.approx(wrong[0].mean(), abs=1e-5)
    assert points[1]["train_error"] == pytest.approx(second.mean(), abs=1e-5)  # 24 images
    assert (points[1]["train_images"], points[1]["train_batches"]) == (24, 2)
    assert points[1]["train_error_se"] == pytest.approx(
        np.std([wrong[1].mean(), wrong[2].mean()], ddof=1) / np.sqrt(2), abs=1e-5)
    assert points[0]["train_error_se"] is None  # one batch: no spread to measure
    predicted = np.argmax(model.predict(test_x, verbose=0), axis=1)
    assert points[1]["test_error"] == pytest.approx(np.mean(predicted != test_y))
    assert points[1]["test_images"] == 24 and points[1]["epoch"] == 1.0


class _CtrlC(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (1, 1):
            raise KeyboardInterrupt


def test_a_resumed_epoch_replaces_its_points(tmp_path):
    model = _model()
    x, y = _data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    first = curve_points.CurveRecorder(tmp_path, x[:8], y[:8], points_per_epoch=3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(ds, epochs=2, verbose=0, shuffle=False, callbacks=[first, _CtrlC()])
    assert [p["step"] for p in run_files.read_curve(tmp_path)["points"]] == [1, 2, 3, 4, 5]
    marked = run_files.read_curve(tmp_path)
    marked["points"][-1]["test_error"] = -1.0  # would survive if not recorded again
    run_files.path(tmp_path, run_files.CURVE).write_text(__import__("json").dumps(marked))

    again = curve_points.CurveRecorder(tmp_path, x[:8], y[:8], points_per_epoch=3)
    model.fit(ds, epochs=2, initial_epoch=1, verbose=0, shuffle=False, callbacks=[again])
    points = run_files.read_curve(tmp_path)["points"]
    assert [p["step"] for p in points] == [1, 2, 3, 4, 5, 6]
    assert points[4]["test_error"] >= 0
