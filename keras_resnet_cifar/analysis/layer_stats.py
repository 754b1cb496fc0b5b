"""Per-layer statistics on a fixed batch, to test claims made for residual networks:

- response std (He et al. 2016, Figure 7: residual functions respond more weakly than
  plain layers): the std over all elements of each 3x3 convolution's output after its BN,
  before any ReLU or addition, in inference mode (BN with its moving averages, as the paper
  analyses a trained net; before training they are 0 and 1, so epoch 0 is the raw conv);
- gradient norm (the reproduction paper's "gradient highway", Shinde 2025, section 4.1;
  He et al. 4.1 say their BN-trained plain nets have healthy gradient norms instead): the
  L2 norm of the gradient of the batch's mean cross-entropy (no weight decay) w.r.t. each
  kernel, in training mode (BN with the batch's statistics, as SGD sees it).

LayerStatsRecorder writes them at chosen epochs into layer_stats.json:
{"batch_size", "response_layers", "gradient_layers", "epochs": [{"epoch", "loss",
"response_std", "gradient_norm"}, ...]}; epoch 0 is the initialised network, epoch e
(maybe fractional: 1.5) the network after the step that completes it.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_resnet_cifar import fileio
from keras_resnet_cifar import run_files
from keras_resnet_cifar.config import as_epoch


def _producer(tensor) -> keras.layers.Layer | None:
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history is not None else None


def response_layers(model: keras.Model) -> list[str]:
    """The BN layers fed directly by a 3x3 convolution (not 1x1 shortcuts), in model order."""
    names = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer.input)
        if isinstance(conv, keras.layers.Conv2D) and tuple(conv.kernel_size) == (3, 3):
            names.append(layer.name)
    return names


def kernel_layers(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def response_std(model: keras.Model, images: np.ndarray,
                 layer_names: Sequence[str] | None = None) -> dict[str, float]:
    """{layer: std over all elements of its output on `images`}, in inference mode."""
    names = list(layer_names) if layer_names is not None else response_layers(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe(tf.convert_to_tensor(images, tf.float32), training=False)
    if len(names) == 1:
        outputs = [outputs]
    return {n: float(np.std(keras.ops.convert_to_numpy(o).astype(np.float64)))
            for n, o in zip(names, outputs)}


def gradient_norms(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                   layer_names: Sequence[str] | None = None) -> tuple[float, dict[str, float]]:
    """(loss, {layer: ||d loss / d kernel||_2}) in training mode; the BN moving averages
    that the forward pass updates are restored, so measuring never changes the model."""
    names = list(layer_names) if layer_names is not None else kernel_layers(model)
    kernels = [model.get_layer(n).kernel for n in names]
    saved = [v.numpy() for v in model.non_trainable_variables]
    x = tf.convert_to_tensor(images, tf.float32)
    y = tf.convert_to_tensor(labels, tf.int64)
    try:
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, probabilities))
        grads = tape.gradient(loss, [k.value for k in kernels])
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    return float(loss), {n: float(tf.norm(tf.cast(g, tf.float64)))
                         for n, g in zip(names, grads)}


def measure(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    stds = response_std(model, images)
    loss, norms = gradient_norms(model, images, labels)
    return {"loss": loss,
            "response_layers": list(stds), "response_std": list(stds.values()),
            "gradient_layers": list(norms), "gradient_norm": list(norms.values())}


class LayerStatsRecorder(keras.callbacks.Callback):
    """Records `measure` on a fixed batch at `epochs` (0: before training; e > 0: after the
    first step with epoch + steps done / steps_per_epoch >= e). The file is rewritten
    atomically after each measurement and keeps earlier epochs, so a resumed run appends."""

    def __init__(self, run_dir: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                 epochs: Sequence[float]):
        super().__init__()
        self.path = run_files.path(run_dir, run_files.LAYER_STATS)
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.epochs = sorted(set(as_epoch(e) for e in epochs))
        if any(e < 0 for e in self.epochs):
            raise ValueError(f"Layer-statistics epochs must be >= 0, got {list(epochs)}.")
        self.records: dict[int | float, dict[str, Any]] = {}
        existing = run_files.read_layer_stats(run_dir)
        if existing:
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
        self.records[epoch] = {"epoch": epoch, "loss": stats["loss"],
                               "response_std": stats["response_std"],
                               "gradient_norm": stats["gradient_norm"]}
        fileio.write_json(self.path, {
            "batch_size": len(self.labels),
            "response_layers": stats["response_layers"],
            "gradient_layers": stats["gradient_layers"],
            "epochs": [self.records[e] for e in sorted(self.records)],
        })
