"""The fused BatchNormalization of the training path (training/batch_norm.py).

Keras' arithmetic in the forward pass and the gradients, PyTorch's moving
averages (the unbiased batch variance), and saved models that stay stock Keras.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_resnet_cifar.config import TrainConfig
from keras_resnet_cifar.models import networks
from keras_resnet_cifar.training import batch_norm, loop


def _bn_model():
    inputs = keras.Input((8, 8, 16))
    outputs = networks._bn("bn")(inputs)
    return keras.Model(inputs, outputs)


def _step(model, x, dy):
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_sum(y * dy)
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def test_fused_batch_norm_is_keras_arithmetic():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, (16, 8, 8, 16)), tf.float32)
    dy = tf.constant(rng.normal(size=(16, 8, 8, 16)), tf.float32)
    stock, fused = _bn_model(), _bn_model()
    fused.set_weights([w + rng.normal(0, 0.1, w.shape) for w in stock.get_weights()])
    stock.set_weights(fused.get_weights())
    moving_mean, moving_var = (w.numpy() for w in fused.non_trainable_weights)
    assert batch_norm.fuse_batch_norm(fused) == 1
    (y0, g0), (y1, g1) = _step(stock, x, dy), _step(fused, x, dy)
    np.testing.assert_allclose(y1, y0, atol=2e-5)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    # Moving averages as torch.nn.BatchNorm2d (the reference trainers): the mean, and
    # the *unbiased* batch variance (Keras' own layer averages the biased one).
    momentum, pixels = networks.BN_MOMENTUM, x.numpy().astype(np.float64)
    np.testing.assert_allclose(
        fused.non_trainable_weights[0].numpy(),
        momentum * moving_mean + (1 - momentum) * pixels.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(
        fused.non_trainable_weights[1].numpy(),
        momentum * moving_var + (1 - momentum) * pixels.var(axis=(0, 1, 2), ddof=1),
        rtol=1e-5)
    assert not np.allclose(stock.non_trainable_weights[1].numpy(),
                           fused.non_trainable_weights[1].numpy(), rtol=1e-5, atol=0)
    # Inference takes Keras' own path: with the same moving averages, bitwise the same.
    stock.set_weights(fused.get_weights())
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  stock(x, training=False).numpy())


def _fused_ops(model) -> int:
    """FusedBatchNormV3 ops in the graph of a training-mode forward pass of ``model``."""
    forward = tf.function(lambda x: model(x, training=True))
    graph = forward.get_concrete_function(tf.TensorSpec((2, 32, 32, 3), tf.float32)).graph
    return sum(op.type == "FusedBatchNormV3" for op in graph.get_operations())


def test_training_runs_fused_kernels_and_saved_models_stay_stock(tmp_path):
    model = loop.build_and_compile(TrainConfig(model="resnet8"))
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    # The training path: one fused kernel per BatchNormalization layer (fails when
    # build_and_compile stops fusing, or the fused path falls back to Keras').
    assert len(batch_norms) == 7 and _fused_ops(model) == len(batch_norms)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    # The saved file holds stock layers: loaded, they run Keras' own (unfused) path,
    # with the same weights and the same inference output.
    assert _fused_ops(loaded) == 0
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  model(x, training=False).numpy())
