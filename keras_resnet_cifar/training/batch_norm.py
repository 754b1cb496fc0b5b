"""BatchNormalization for training: one fused TF kernel per layer; float32 under mixed precision.
fuse_batch_norm swaps each layer instance's call (using private attributes of Keras 3.15);
class, config and weights stay stock Keras, so saved files are unaffected."""

from __future__ import annotations

import types

import keras
import tensorflow as tf


def float32_batch_norm(model: keras.Model) -> keras.Model:
    """The same model (same weights) with BatchNormalization in float32: under mixed
    precision the batch statistics are then float32, and the fused kernel applies."""

    def clone_layer(layer):
        layer_config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer_config["dtype"] = "float32"
        return layer.__class__.from_config(layer_config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def fuse_batch_norm(model: keras.Model) -> int:
    """Makes each training-mode BatchNormalization of `model` one fused kernel (Keras 3.15
    runs ~10 element-wise kernels forward and 20 backward; FusedBatchNormV3 two passes each
    way); returns how many layers were switched. Cases it does not cover (inference, masks,
    renorm, synchronized, other axes, dtypes or backends) take Keras' own path."""
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in model._flatten_layers(include_self=False):
        if type(layer) is keras.layers.BatchNormalization:
            layer.call = types.MethodType(_fused_batch_norm_call, layer)
            count += 1
    return count


def _fused_batch_norm_call(layer, inputs, training=None, mask=None):
    fusable = (training is True and layer.trainable and mask is None
               and inputs.dtype == tf.float32 and inputs.shape.rank == 4
               and list(layer._reduction_axes) == [0, 1, 2]
               and layer.center and layer.scale
               and not layer.renorm and not layer.synchronized)
    if not fusable:
        return type(layer).call(layer, inputs, training=training, mask=mask)
    empty = tf.constant([], tf.float32)
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=tf.cast(layer.gamma, tf.float32),
        offset=tf.cast(layer.beta, tf.float32), mean=empty, variance=empty,
        epsilon=layer.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    # The kernel returns the unbiased (n - 1) batch variance for the moving average, as
    # torch.nn.BatchNorm2d (the reference) averages; Keras averages the biased one (all
    # three normalise with the biased one).
    m = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * m + mean * (1.0 - m))
    layer.moving_variance.assign(layer.moving_variance * m + variance * (1.0 - m))
    return tf.cast(outputs, layer.compute_dtype)
