"""Per-layer statistics on a fixed batch: response std and gradient norms.

Two measurements that test claims made for residual networks rather than assert
them: He et al.'s (2016, Figure 7) weaker responses of residual functions, and the
reproduction paper's (V. R. Shinde, 2025, section 4.1) "gradient highway" (He et al.,
section 4.1, say instead that the gradients of their BN-trained plain nets have healthy
norms):

* **Response std** (He et al. 2016, Figure 7): the standard deviation of the
  output of every 3x3 convolution *after its batch normalisation and before any
  nonlinearity or addition* (in this project's models: ``stem_bn`` and every
  ``stage{s}_block{b}_bn1`` / ``_bn2``). It is computed in inference mode (BN
  uses its moving averages, as when the paper analyses a trained net), over all
  elements of the output (images, positions and channels together). He et al.
  found residual functions respond more weakly than plain layers. Before any
  training the moving averages are still 0 and 1, so BN in inference mode is
  the identity and the epoch-0 "response" is the raw convolution output.
* **Gradient norm**: the L2 norm of the gradient of the mean cross-entropy of
  the batch (without the weight-decay term) with respect to the kernel of every
  convolution and dense layer. It is computed in training mode (BN uses the
  batch's statistics, as SGD sees it); the BN moving averages that this forward
  pass updates are restored afterwards, so measuring never changes the model.

:func:`response_std` and :func:`gradient_norms` are pure functions of a model and
a batch; :class:`LayerStatsRecorder` is a Keras callback that records both at
chosen epochs into ``<run>/layer_stats.json``:

    {"batch_size": 256,
     "response_layers": ["stem_bn", "stage1_block1_bn1", ...],
     "gradient_layers": ["stem_conv", "stage1_block1_conv1", ..., "logits"],
     "epochs": [{"epoch": 0, "loss": 2.41, "response_std": [...],
                 "gradient_norm": [...]}, ...]}

Epoch 0 is the initialised network before any training step; epoch ``e`` is the
network after ``e`` epochs of steps, which may be a fraction (1.5: after the step
that completes half of the second epoch), so that a 3-pass run can be measured
mid-run.
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
from keras_resnet_cifar.data.datasets import Split, fixed_subset

FILENAME = run_files.LAYER_STATS


def _producer(tensor) -> keras.layers.Layer | None:
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history is not None else None


def response_layers(model: keras.Model) -> list[str]:
    """Names of the BN layers fed directly by a 3x3 convolution, in model order.

    These are He et al.'s "responses": the outputs of each 3x3 layer after BN
    and before the ReLU or the addition. 1x1 projection shortcuts are excluded.
    """
    names = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer.input)
        if isinstance(conv, keras.layers.Conv2D) and tuple(conv.kernel_size) == (3, 3):
            names.append(layer.name)
    return names


def kernel_layers(model: keras.Model) -> list[str]:
    """Names of the convolution and dense layers (the ones with a trainable kernel)."""
    return [layer.name for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def response_std(model: keras.Model, images: np.ndarray,
                 layer_names: Sequence[str] | None = None) -> dict[str, float]:
    """The std of each layer's output on ``images``, in inference mode.

    Args:
        model: a functional Keras model.
        images: a batch the model accepts (raw pixels for this project's models).
        layer_names: the layers to measure; default :func:`response_layers`.

    Returns:
        {layer name: std over all elements of its output}, in the given order.
    """
    names = list(layer_names) if layer_names is not None else response_layers(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe(tf.convert_to_tensor(images, tf.float32), training=False)
    if len(names) == 1:
        outputs = [outputs]
    return {n: float(np.std(keras.ops.convert_to_numpy(o).astype(np.float64)))
            for n, o in zip(names, outputs)}


def gradient_norms(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                   layer_names: Sequence[str] | None = None) -> tuple[float, dict[str, float]]:
    """The loss of the batch and the L2 norm of its gradient w.r.t. each layer's kernel.

    The loss is the mean sparse categorical cross-entropy of the model's
    probabilities (no regularisation term), in training mode; BN moving averages
    changed by the forward pass are restored.

    Args:
        model: a Keras model whose output is class probabilities.
        images: the batch.
        labels: integer labels of the batch.
        layer_names: layers with a ``kernel``; default :func:`kernel_layers`.

    Returns:
        (loss, {layer name: ||d loss / d kernel||_2}).
    """
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
    """Both statistics as one record: loss, layer names and per-layer values."""
    stds = response_std(model, images)
    loss, norms = gradient_norms(model, images, labels)
    return {"loss": loss,
            "response_layers": list(stds), "response_std": list(stds.values()),
            "gradient_layers": list(norms), "gradient_norm": list(norms.values())}


def fixed_batch(split: Split, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``size`` images and labels of ``split``, fixed by ``seed`` (:func:`datasets.fixed_subset`)."""
    return fixed_subset(split, size, seed)


def read(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The layer_stats.json of a run directory, or None when it has none."""
    return run_files.read_layer_stats(run_dir)


class LayerStatsRecorder(keras.callbacks.Callback):
    """Records :func:`measure` at chosen epochs into ``<run_dir>/layer_stats.json``.

    Args:
        run_dir: the run directory (the file is rewritten atomically after each
            measurement; epochs already in it are kept, so resumed runs append).
        images: the fixed batch's images (e.g. from :func:`fixed_batch` on the
            training split), raw pixels as the model takes them.
        labels: its integer labels.
        epochs: epoch counts at which to measure, whole or fractional: 0 measures
            the initialised network at the start of training, ``e > 0`` the network
            after the first step that reaches ``e`` epochs (``epoch + steps done /
            steps_per_epoch >= e``).
    """

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
