"""Plain and residual CIFAR-10 networks of He et al. (2016), section 4.2.

One builder for both families (plain lacks the shortcut's addition). Stock keras.layers
only, so a .keras file loads in safe mode without this package (compile=False: the
training optimiser is registered on import). Layer names (s in 1..3, b in 1..n):

    image, normalize                      raw RGB pixels in [0, 255]; (x - mean) / std
    stem_conv, stem_bn, stem_relu         3x3 conv (16) - BN - ReLU
    stage{s}_block{b}_pad                 explicit 1-pixel padding (stride-2 blocks only)
    stage{s}_block{b}_conv1, _bn1, _relu1, _conv2, _bn2
    stage{s}_block{b}_shortcut_subsample  option A: x[:, ::2, ::2, :] (stride-2 blocks)
    stage{s}_block{b}_shortcut_pad_c      option A: zero channels, half before, half after
    stage{s}_block{b}_shortcut_conv, _bn  option B: 1x1 projection (stride-2 blocks)
    stage{s}_block{b}_add, _out           residual nets only; the block's final ReLU
    pool, logits, probabilities           global average pool, 10-way dense, softmax

Parameter counts (option A; plain and residual identical): 269,722 (20), 464,154 (32),
658,586 (44), 853,018 (56), 1,727,962 (110).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from keras_resnet_cifar.models import arch

# The reference Torch/PyTorch BatchNorm: eps 1e-5, running averages updated with
# 0.1 of the batch statistic (Keras' momentum is the weight of the old value).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _kernel_init():
    # He-normal as PyTorch's kaiming_normal_(mode="fan_in"): an untruncated normal with
    # std sqrt(2 / fan_in). (Keras' "he_normal" truncates at two standard deviations.)
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal")


def _l2(weight_decay):
    """weight_decay / 2 * ||w||^2: its gradient is weight_decay * w."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _conv(filters, kernel_size, strides, padding, name, weight_decay):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                         use_bias=False, kernel_initializer=_kernel_init(),
                         kernel_regularizer=_l2(weight_decay), name=name)


def _bn(name, synchronized=False, weight_decay=0.0):
    # weight_decay of gamma and beta: the reference trainers pass every parameter to
    # SGD(weight_decay=1e-4), BatchNorm's included.
    return layers.BatchNormalization(axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                     synchronized=synchronized, name=name,
                                     gamma_regularizer=_l2(weight_decay),
                                     beta_regularizer=_l2(weight_decay))


def _shortcut(x, filters, strides, option, name, weight_decay, *, sync_bn=False,
              bn_weight_decay=0.0):
    in_filters = x.shape[-1]
    if strides == 1 and in_filters == filters:
        return x
    if option == "B":
        x = _conv(filters, 1, strides, "valid", f"{name}_conv", weight_decay)(x)
        return _bn(f"{name}_bn", sync_bn, bn_weight_decay)(x)
    # Option A. A stride-2 1x1 max-pool keeps x[:, ::2, ::2, :]: the pixels the stride-2
    # 3x3 convolution (padded 1 on each side) is centred on.
    if strides != 1:
        x = layers.MaxPooling2D(pool_size=1, strides=strides, name=f"{name}_subsample")(x)
    # Zero channels, half before and half after (as the reference implementations); with
    # no channel padding layer, channels are a third spatial axis for ZeroPadding3D.
    extra = filters - in_filters
    h, w = x.shape[1], x.shape[2]
    x = layers.Reshape((h, w, in_filters, 1), name=f"{name}_expand")(x)
    x = layers.ZeroPadding3D(((0, 0), (0, 0), (extra // 2, extra - extra // 2)),
                             name=f"{name}_pad_c")(x)
    return layers.Reshape((h, w, filters), name=f"{name}_squeeze")(x)


def basic_block(x, filters: int, strides: int, residual: bool, shortcut: str, name: str, *,
                weight_decay: float = 0.0, sync_bn: bool = False, bn_weight_decay: float = 0.0):
    """conv3x3 - BN - ReLU - conv3x3 - BN (+ shortcut) - ReLU; bn_weight_decay: gamma, beta."""
    if strides == 1:
        y = _conv(filters, 3, 1, "same", f"{name}_conv1", weight_decay)(x)
    else:
        # padding="same" pads 0 before and 1 after for stride 2 on an even size, sampling
        # odd pixels where the shortcut keeps even ones: pad 1 on every side (the reference).
        y = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        y = _conv(filters, 3, strides, "valid", f"{name}_conv1", weight_decay)(y)
    y = _bn(f"{name}_bn1", sync_bn, bn_weight_decay)(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, "same", f"{name}_conv2", weight_decay)(y)
    y = _bn(f"{name}_bn2", sync_bn, bn_weight_decay)(y)
    if residual:
        s = _shortcut(x, filters, strides, shortcut, f"{name}_shortcut", weight_decay,
                      sync_bn=sync_bn, bn_weight_decay=bn_weight_decay)
        y = layers.Add(name=f"{name}_add")([y, s])
    return layers.ReLU(name=f"{name}_out")(y)


def build_model(name: str, *, shortcut: str = "A", num_classes: int = 10,
                mean: Sequence[float] = arch.CIFAR10_MEAN, std: Sequence[float] = arch.CIFAR10_STD,
                weight_decay: float = 1e-4, weight_decay_scope: str = "all",
                sync_batchnorm: bool = False) -> keras.Model:
    """plainN or resnetN (N = 6n + 2) for raw 32x32 RGB pixels; ValueError for bad arguments.
    weight_decay: lambda of the reference update g += lambda * w, as the L2 term lambda / 2
    * ||w||^2 (through momentum; Keras' SGD(weight_decay) is decoupled). Scope "all" (the
    reference trainers) also decays BatchNorm gamma, beta and the dense bias. sync_batchnorm:
    statistics over the global batch (Keras 3 does not aggregate per-replica averages)."""
    spec = arch.parse_name(name)
    if shortcut not in arch.SHORTCUTS:
        raise ValueError(f"Unknown shortcut option {shortcut!r}: expected 'A' or 'B'.")
    if weight_decay_scope not in arch.WEIGHT_DECAY_SCOPES:
        raise ValueError(f"Unknown weight_decay_scope {weight_decay_scope!r}: expected "
                         f"one of {', '.join(arch.WEIGHT_DECAY_SCOPES)}.")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values with std > 0; got {mean}, {std}.")

    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                             name="normalize")(inputs)
    x = _conv(spec.widths[0], 3, 1, "same", "stem_conv", weight_decay)(x)
    bn_decay = weight_decay if weight_decay_scope == "all" else 0.0
    x = _bn("stem_bn", sync_batchnorm, bn_decay)(x)
    x = layers.ReLU(name="stem_relu")(x)
    for s, filters in enumerate(spec.widths, start=1):
        for b in range(1, spec.blocks_per_stage + 1):
            strides = 2 if s > 1 and b == 1 else 1
            x = basic_block(x, filters, strides, spec.residual, shortcut, f"stage{s}_block{b}",
                            weight_decay=weight_decay, sync_bn=sync_batchnorm,
                            bn_weight_decay=bn_decay)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(num_classes, kernel_initializer=_kernel_init(), name="logits",
                     kernel_regularizer=_l2(weight_decay), bias_regularizer=_l2(bn_decay))(x)
    # float32 even under a mixed-precision policy, for a stable softmax and loss.
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    suffix = "" if not spec.residual or shortcut == "A" else "_B"
    return keras.Model(inputs, outputs, name=f"{name}{suffix}")


def count_trainable_params(model: keras.Model) -> int:
    """The number of trainable scalars (what He et al.'s Table 6 counts, in millions)."""
    return int(sum(keras.ops.size(w) for w in model.trainable_weights))
