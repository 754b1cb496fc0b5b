"""Per-layer statistics on a fixed batch, to test claims made for residual networks.

Response std (He et al. 2016, Figure 7: residual functions respond more weakly): the std
of each 3x3 convolution's output after its BN, before any ReLU or addition, in inference
mode as the paper analyses a trained net (at epoch 0 BN is the identity). Gradient norm
(the "gradient highway" of Shinde 2025, 4.1; He et al. 4.1 find healthy norms in their
BN-trained plain nets): of the mean cross-entropy without weight decay w.r.t. each kernel,
in training mode as SGD sees it. layer_stats.json: LayerStatsRecorder._record."""

from __future__ import annotations

import os
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_resnet_cifar import fileio, run_files
from keras_resnet_cifar.config import as_epoch


def response_layers(model: keras.Model) -> list[str]:
    """The BN layers fed directly by a 3x3 convolution (not 1x1 shortcuts), in model order."""
    def after_3x3(layer) -> bool:
        conv = getattr(getattr(layer.input, "_keras_history", None), "operation", None)
        return isinstance(conv, keras.layers.Conv2D) and tuple(conv.kernel_size) == (3, 3)

    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization) and after_3x3(layer)]


def kernel_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def response_std(model: keras.Model, images: np.ndarray) -> dict[str, float]:
    """{response layer: std over all elements of its output on `images`}, in inference mode."""
    names = response_layers(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe(tf.convert_to_tensor(images, tf.float32), training=False)
    if len(names) == 1:
        outputs = [outputs]
    return {n: float(np.std(keras.ops.convert_to_numpy(o).astype(np.float64)))
            for n, o in zip(names, outputs)}


def gradient_norms(model: keras.Model, images: np.ndarray,
                   labels: np.ndarray) -> tuple[float, dict[str, float]]:
    """(loss, {layer: ||d loss / d kernel||_2}) in training mode; the BN moving averages
    that the forward pass updates are restored, so measuring never changes the model."""
    names = kernel_layers(model)
    kernels = [model.get_layer(n).kernel for n in names]
    saved = [v.numpy() for v in model.non_trainable_variables]
    x, y = tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(labels, tf.int64)
    try:
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
        grads = tape.gradient(loss, [k.value for k in kernels])
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    return float(loss), {n: float(tf.norm(tf.cast(g, tf.float64))) for n, g in zip(names, grads)}


def measure(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    stds = response_std(model, images)
    loss, norms = gradient_norms(model, images, labels)
    return {"loss": loss, "response_layers": list(stds), "response_std": list(stds.values()),
            "gradient_layers": list(norms), "gradient_norm": list(norms.values())}


class LayerStatsRecorder(keras.callbacks.Callback):
    """Records `measure` on a fixed batch at `epochs` (0: before training; e > 0: after the
    first step with epoch + steps done / steps_per_epoch >= e). The file is rewritten
    atomically after each measurement and keeps earlier epochs, so a resumed run appends."""

    def __init__(self, run_dir: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                 epochs: Sequence[float]):
        super().__init__()
        self.path = run_files.path(run_dir, run_files.LAYER_STATS)
        self.images, self.labels = np.asarray(images), np.asarray(labels)

        self.epochs = sorted(set(as_epoch(e) for e in epochs))
        if any(e < 0 for e in self.epochs):
            raise ValueError(f"Layer-statistics epochs must be >= 0, got {list(epochs)}.")
        existing = run_files.read_layer_stats(run_dir) or {"epochs": []}
        self.records = {as_epoch(r["epoch"]): r for r in existing["epochs"]}
        self._epoch = 0

    def on_train_begin(self, logs=None):
        if 0 in self.epochs and 0 not in self.records:
            self._record(0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        # A resumed run repeats the epoch it was interrupted in: re-measure its points.
        self.records = {e: r for e, r in self.records.items() if e <= epoch}

    def on_train_batch_end(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        reached = self._epoch + ((batch + 1) / steps if steps else 0.0)
        for target in self.epochs:
            if self._epoch < target <= reached + 1e-9 and target not in self.records:
                self._record(target)

    def on_epoch_end(self, epoch, logs=None):
        # Epoch lengths unknown to Keras (no steps): whole epochs are measured here.
        if epoch + 1 in self.epochs and epoch + 1 not in self.records:
            self._record(epoch + 1)

    def _record(self, epoch: int | float) -> None:
        stats = measure(self.model, self.images, self.labels)
        self.records[epoch] = {"epoch": epoch, **{k: stats[k] for k in (
            "loss", "response_std", "gradient_norm")}}
        fileio.write_json(self.path, {
            "batch_size": len(self.labels), "response_layers": stats["response_layers"],
            "gradient_layers": stats["gradient_layers"],
            "epochs": [self.records[e] for e in sorted(self.records)]})

